"""`train.py stage=sft` end to end: loss goes down, kill-and-resume, QLoRA on CPU, the embedded student."""

import json
import signal
import subprocess
import sys
import time

import pytest

from cogumi.artifacts import ArtifactStore
from cogumi.paths import PROJECT_ROOT
from cogumi.train.fixtures import demo_dataset, write_tiny_llama
from tests.conftest import run_entry

pytestmark = pytest.mark.slow

TINY_RUN = ["logger=none", "stage.run.seq_len=128", "stage.run.max_train_records=48", "stage.run.max_val_records=8",
            "stage.run.lr=3e-3", "stage.run.warmup_steps=1", "stage.run.lora_dropout=0.1", "hardware.batch_size=2",
            "stage.run.progress_bar=false"]


@pytest.fixture
def tiny_setup(outputs, tmp_path, embedded_model):
    store = ArtifactStore(outputs / "artifacts")
    demo_dataset(store, n_train=48, n_val=8)
    tiny = write_tiny_llama(tmp_path / "tiny-llama", embedded_model)
    return store, [f"model.local_dir={tiny}", *TINY_RUN]


def _sft(store):
    artifacts = store.artifacts("sft")
    assert len(artifacts) == 1, [a.path for a in artifacts]
    return artifacts[0]


def test_sft_trains_and_a_killed_run_resumes_to_the_same_result(tiny_setup, outputs):
    """One uninterrupted run (checked on its own), then the same command killed and rerun."""
    import os

    import torch

    store, overrides = tiny_setup
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), "stage=sft", *overrides, "stage.run.max_steps=10",
               "stage.run.val_every=5", "stage.run.save_every=2"]
    fresh = outputs.parent / "uninterrupted"
    fresh_store = ArtifactStore(fresh / "artifacts")
    demo_dataset(fresh_store, n_train=48, n_val=8)
    env = {**os.environ, "COGUMI_OUTPUTS": str(fresh)}
    # This run also logs through Lightning's WandbLogger (offline); the killed/resumed one has logger=none.
    clean = subprocess.run([*command, "logger=wandb"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=600, env=env)
    assert clean.returncode == 0, clean.stderr[-3000:]
    history = b"".join(p.read_bytes() for p in fresh.glob("wandb/offline-run-*/run-*.wandb"))
    for key in (b"train_loss", b"val_loss", b"grad_norm", b"tok_s", b"lr"):
        assert key in history, key
    assert not (outputs / "wandb").exists()
    artifact = _sft(fresh_store)
    clean_metrics = artifact.metrics
    assert clean_metrics["val_loss"] < clean_metrics["val_loss_untrained"]
    assert clean_metrics["optimizer_steps"] == 10 and clean_metrics["tokens_seen"] > 0
    assert 0 < clean_metrics["trainable_params"] < clean_metrics["total_params"]
    for produced in ("model/config.json", "model/model.safetensors", "adapter/adapter_config.json", "loss.png"):
        assert (artifact.path / produced).is_file(), produced

    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               text=True)
    checkpoints = outputs / "checkpoints" / "sft"
    deadline = time.time() + 300
    while time.time() < deadline and not list(checkpoints.glob("*/last.ckpt")) and process.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint file be written completely
    process.send_signal(signal.SIGKILL)
    process.wait()
    last = next(checkpoints.glob("*/last.ckpt"))
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 2 <= killed_at < 10 and not store.artifacts("sft")

    resumed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "resuming from" in log and f"(step {killed_at})" in log, log[-3000:]
    resumed_metrics = _sft(store).metrics
    assert not checkpoints.joinpath(last.parent.name).exists()  # cleaned up once the artifact exists

    assert resumed_metrics["optimizer_steps"] == clean_metrics["optimizer_steps"] == 10
    assert resumed_metrics["val_loss"] == pytest.approx(clean_metrics["val_loss"], abs=2e-3)
    assert resumed_metrics["train_loss_last"] == pytest.approx(clean_metrics["train_loss_last"], abs=2e-3)
    assert resumed_metrics["tokens_seen"] == clean_metrics["tokens_seen"]
    training = json.loads((_sft(store).path / "manifest.json").read_text())["training"]
    assert training["max_steps_resolved"] == 10


def test_qlora_step_on_cpu_with_bitsandbytes(tmp_path, embedded_model):
    """The QLoRA path (NF4 + double quant base, LoRA on top) takes a real optimizer step on CPU."""
    import dataclasses

    import torch

    from cogumi.hardware import HardwareSpec
    from cogumi.models import load_causal_lm
    from cogumi.train.datamodule import collate_rows
    from cogumi.train.examples import encode_conversation, unpacked_rows
    from cogumi.train.module import LoraSettings, add_lora, batch_loss, make_optimizer

    folder = write_tiny_llama(tmp_path / "tiny", embedded_model, hidden=128)
    spec = dataclasses.replace(HardwareSpec(name="cpu-qlora"), load_in_4bit=True, bnb_4bit_compute_dtype="float32")
    model, tokenizer = load_causal_lm(folder, spec, load_in_4bit=True)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    peft_model = add_lora(model, LoraSettings(rank=8), quantized=True)
    chat = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]
    batch = collate_rows(unpacked_rows([encode_conversation(tokenizer, chat, 64)]), tokenizer.pad_token_id)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = make_optimizer("adamw", params, lr=1e-2, weight_decay=0.0)
    peft_model.train()
    loss = batch_loss(peft_model, batch)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, params))


def _run_stage_in_process(stage: str, overrides: list[str]):
    from hydra.utils import instantiate

    from cogumi.entry import build_context, compose_entry

    cfg = compose_entry("train", [f"stage={stage}", *overrides])
    return instantiate(cfg.stage.run)(build_context(cfg, stage))


def test_distill_and_recovery_run_on_the_same_code(tiny_setup):
    store, overrides = tiny_setup
    short = [*overrides, "stage.run.max_steps=2", "stage.run.val_every=2", "stage.run.progress_bar=false"]
    sft = _run_stage_in_process("sft", short)
    # The curate demo set doubles as the failure-targeted set here; replay comes from the same artifact.
    distill = _run_stage_in_process("distill", [*short, f"stage.run.model={sft.ref}", "stage.run.lr=1e-3",
                                                "stage.run.dataset=latest:curate", "stage.run.max_train_records=16"])
    assert distill.manifest["training"]["targeted_records"] == 16
    assert distill.manifest["training"]["replayed_records"] == 4  # 20 % of the mix
    assert any(i.get("artifact") == sft.ref for i in distill.manifest["inputs"])
    recovery = _run_stage_in_process("recovery", [*short, f"stage.run.model={sft.ref}", "stage.run.fraction=0.25"])
    assert recovery.manifest["training"]["selected_records"] == 12  # a quarter of 48 scored
    assert recovery.manifest["training"]["selection_loss_cutoff"] >= recovery.manifest["training"]["pool_median_loss"]
    assert (recovery.path / "model" / "model.safetensors").is_file()
