"""Loading: 4-bit only where training asks for it, one device per data-parallel rank, fingerprints."""

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import cogumi
from cogumi.entry import compose_entry, fingerprint_config
from cogumi.hardware import HardwareSpec
from cogumi.models import load_causal_lm
from cogumi.train.fixtures import write_tiny_llama

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")


def _h100_of_the_8b_preset(entry: str = "train") -> HardwareSpec:
    cfg = compose_entry(entry, ["experiments=llama-8b", "stage=sft" if entry == "train" else "stage=prune"])
    assert cfg.model.hf_id == "meta-llama/Llama-3.1-8B-Instruct" and cfg.hardware.name == "h100"
    return instantiate(cfg.hardware)


def _is_4bit(model) -> bool:
    return any(type(m).__name__ == "Linear4bit" for m in model.modules())


def test_only_training_asks_the_loader_for_4bit():
    """Every call of load_causal_lm outside the fine-tuning recipe loads full precision (no load_in_4bit=)."""
    root = Path(cogumi.__file__).parent
    asking = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "load_causal_lm":
                if any(k.arg == "load_in_4bit" for k in node.keywords):
                    asking.add(str(path.relative_to(root)))
    assert asking == {"train/finetune.py"}


def test_8b_preset_with_h100_loads_4bit_only_for_training(tmp_path, embedded_model):
    """The composed 8B + h100 profile on a tiny Llama (CPU stands in for the GPU: bitsandbytes runs on both)."""
    spec = _h100_of_the_8b_preset()
    assert spec.load_in_4bit  # the QLoRA recipe of the seeds
    cpu_stand_in = dataclasses.replace(spec, accelerator="cpu", bnb_4bit_compute_dtype="float32")
    folder = write_tiny_llama(tmp_path / "tiny", embedded_model, hidden=128)

    measured, _ = load_causal_lm(folder, cpu_stand_in)  # what prune/quantize/perplexity/fidelity get
    assert not _is_4bit(measured) and next(measured.parameters()).dtype == torch.bfloat16

    trained, _ = load_causal_lm(folder, cpu_stand_in, load_in_4bit=cpu_stand_in.load_in_4bit)  # finetune.py
    assert _is_4bit(trained)


def test_each_data_parallel_rank_gets_its_own_gpu(monkeypatch):
    spec = instantiate(compose_entry("train", ["hardware=h100x8", "stage=sft"]).hardware)
    assert spec.strategy == "ddp" and spec.devices == 8
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert spec.device == "cuda"
    for rank in (0, 3, 7):
        monkeypatch.setenv("LOCAL_RANK", str(rank))  # set per process by Lightning's / torchrun's launcher
        assert spec.device == f"cuda:{rank}"
    assert HardwareSpec(name="cpu").device == "cpu"


def test_teacher_is_in_the_fingerprint_of_evaluate_stages_only():
    def fingerprinted(entry, stage, teacher):
        cfg = compose_entry(entry, [f"stage={stage}", f"teacher={teacher}"])
        resolved = OmegaConf.to_container(cfg, resolve=False)
        return fingerprint_config(resolved)

    assert fingerprinted("evaluate", "failures", "local") != fingerprinted("evaluate", "failures", "openai")
    assert fingerprinted("compress", "prune", "local") == fingerprinted("compress", "prune", "openai")


@pytest.mark.gpu
@requires_cuda
def test_8b_profile_on_cuda_loads_bf16_for_measuring_and_nf4_for_training(tmp_path, embedded_model):
    spec = _h100_of_the_8b_preset()
    folder = write_tiny_llama(tmp_path / "tiny", embedded_model, hidden=128)
    measured, _ = load_causal_lm(folder, spec)
    assert not _is_4bit(measured) and measured.device.type == "cuda"
    assert next(measured.parameters()).dtype == torch.bfloat16
    trained, _ = load_causal_lm(folder, spec, load_in_4bit=True)
    assert _is_4bit(trained) and trained.device.type == "cuda"


@pytest.mark.gpu
@requires_cuda
def test_qlora_step_on_cuda_moves_only_the_lora_weights(tmp_path, embedded_model):
    from cogumi.train.datamodule import collate_rows
    from cogumi.train.examples import encode_conversation, unpacked_rows
    from cogumi.train.module import LoraSettings, add_lora, batch_loss, make_optimizer

    spec = _h100_of_the_8b_preset()
    folder = write_tiny_llama(tmp_path / "tiny", embedded_model, hidden=128)
    model, tokenizer = load_causal_lm(folder, spec, load_in_4bit=True)
    peft_model = add_lora(model, LoraSettings(rank=8), quantized=True)
    chat = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]
    batch = collate_rows(unpacked_rows([encode_conversation(tokenizer, chat, 64)]), tokenizer.pad_token_id)
    batch = {k: v.to(model.device) for k, v in batch.items()}
    params = [p for p in peft_model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = make_optimizer(spec.optimizer, params, lr=1e-2, weight_decay=0.0)  # paged 8-bit AdamW
    with torch.autocast("cuda", dtype=torch.bfloat16):
        batch_loss(peft_model, batch).backward()
    optimizer.step()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, params))


@pytest.mark.gpu
@requires_cuda
def test_gptq_w4a16_on_cuda_keeps_the_tiny_model_close(tmp_path, embedded_model):
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier

    from cogumi.compress.quantize import _scheme

    spec = _h100_of_the_8b_preset()
    folder = write_tiny_llama(tmp_path / "tiny", embedded_model, hidden=128)
    model, tokenizer = load_causal_lm(folder, spec)
    ids = torch.randint(0, len(tokenizer), (8, 64))
    from datasets import Dataset

    dataset = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    reference = model(input_ids=ids[:2].to(model.device)).logits.float()
    oneshot(model=model, tokenizer=tokenizer, dataset=dataset, recipe=[GPTQModifier(config_groups=_scheme(4, 64, True))],
            num_calibration_samples=8, max_seq_length=64)
    quantized = model(input_ids=ids[:2].to(model.device)).logits.float()
    assert not torch.equal(reference, quantized)  # weights were quantized in place ...
    assert torch.nn.functional.cosine_similarity(reference.flatten(), quantized.flatten(), dim=0) > 0.9  # ... faithfully
