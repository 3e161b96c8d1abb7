"""The embedded student end to end: it loads, answers, and the perplexity stage behaves as a stage."""

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import run_entry
from cogumi.artifacts import ArtifactStore
from cogumi.errors import ModelLoadError
from cogumi.hardware import HardwareSpec
from cogumi.models import chat, load_causal_lm
from cogumi.paths import PROJECT_ROOT


def test_an_offline_hub_id_fails_naming_the_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="meta-llama/Llama-3.1-8B-Instruct"):
        load_causal_lm("meta-llama/Llama-3.1-8B-Instruct", HardwareSpec(name="cpu"))


def test_a_missing_model_folder_is_named():
    with pytest.raises(ModelLoadError, match="/nonexistent/model"):
        load_causal_lm("/nonexistent/model", HardwareSpec(name="cpu"))


@pytest.mark.slow
def test_embedded_student_knows_the_capital_of_france(embedded_model):
    model, tokenizer = load_causal_lm(embedded_model, HardwareSpec(name="cpu"))
    answer = chat(model, tokenizer, [{"role": "user", "content": "What is the capital of France?"}], 24)
    assert "Paris" in answer


@pytest.mark.slow
def test_perplexity_stage_writes_a_manifest_then_skips_an_unchanged_rerun(outputs, embedded_model):
    args = ("stage=perplexity", "stage.run.max_windows=8")
    first = run_entry("evaluate", *args)
    assert first.returncode == 0, first.stderr
    store = ArtifactStore(outputs / "artifacts")
    [artifact] = store.artifacts("perplexity")
    # A 135M model on Wikipedia prose: far better than uniform over 49k tokens, far from perfect.
    assert 5 < artifact.metrics["perplexity"] < 60
    assert artifact.metrics["tokens_scored"] == 8 * 255
    # The run was tracked in W&B (offline): its run file holds the metric under its name, as JSON text.
    [run_file] = (outputs / "wandb").glob("offline-run-*/run-*.wandb")
    recorded = run_file.read_bytes()
    assert b"perplexity" in recorded and json.dumps(artifact.metrics["perplexity"]).encode() in recorded

    second = run_entry("evaluate", *args, "logger=none")
    assert second.returncode == 0 and "up to date" in second.stdout
    assert len(store.artifacts("perplexity")) == 1

    changed = run_entry("evaluate", "stage=perplexity", "stage.run.max_windows=4", "logger=none")
    assert changed.returncode == 0, changed.stderr
    assert len(store.artifacts("perplexity")) == 2


@pytest.mark.slow
def test_a_stage_killed_mid_write_leaves_no_artifact_and_reruns(outputs, embedded_model):
    args = [sys.executable, str(PROJECT_ROOT / "evaluate.py"), "stage=perplexity", "stage.run.max_windows=24",
            "stage.run.batch_size=1", "logger=none"]
    stage_dir = outputs / "artifacts" / "perplexity"
    process = subprocess.Popen(args, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(stage_dir.glob(".tmp-*")):
        assert process.poll() is None and time.time() < deadline, "stage ended before writing"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    store = ArtifactStore(outputs / "artifacts")
    assert store.artifacts("perplexity") == []

    rerun = run_entry("evaluate", *args[2:])
    assert rerun.returncode == 0, rerun.stderr
    assert len(store.artifacts("perplexity")) == 1
    assert not list(stage_dir.glob(".tmp-*"))


def test_pipeline_dry_run_lists_the_preset_steps():
    result = subprocess.run([sys.executable, "-m", "cogumi", "pipeline", "--dry-run"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "evaluate.py experiments=embedded stage=perplexity" in result.stderr


def test_gate_steps_are_verdicts_other_steps_must_succeed():
    from cogumi.pipeline import pipeline_steps

    steps = pipeline_steps("embedded", [])
    gates = [s for s in steps if s.gate]
    assert gates and all("stage=gate" in s.shown for s in gates)
    assert all(not s.gate for s in steps if "stage=gate" not in s.shown)
    assert all(s.command[2] == "experiments=embedded" for s in steps)


def test_a_pipeline_the_disk_cannot_hold_fails_before_its_first_step(outputs):
    from cogumi.pipeline import PipelineError, run_pipeline

    with pytest.raises(PipelineError, match=r"GiB free.*pipeline\.disk_gib"):
        run_pipeline("embedded", ["pipeline.disk_gib=1000000"])
    assert not any(outputs.rglob("manifest.json")), "no step may run when the disk cannot hold the run"


def test_what_a_resumed_pipeline_already_wrote_counts_towards_its_disk_figure(outputs):
    from cogumi.pipeline import PipelineError, check_free_disk, tree_gib

    free = shutil.disk_usage(outputs.parent).free / 2**30
    (outputs / "artifacts").mkdir(parents=True, exist_ok=True)
    (outputs / "artifacts" / "weights.bin").write_bytes(b"\0" * 2**20)
    present = tree_gib(outputs)
    assert present == pytest.approx(2**-10)
    # A run that needs the free space plus what is already written still fits; a bigger one does not.
    check_free_disk(outputs, free + present - 0.5, "embedded")
    with pytest.raises(PipelineError, match="GiB of it already there"):
        check_free_disk(outputs, free + present + 1.0, "embedded")
