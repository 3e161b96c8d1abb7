"""`evaluate.py stage=recovery_gap` end to end on tiny Llamas standing in for dense / pruned / recovered."""

import shutil

import pytest

from cogumi.artifacts import ArtifactStore
from tests.conftest import run_entry


def _model_artifact(store: ArtifactStore, stage: str, folder, zero_fraction: float = 0.0):
    """A model artifact (HF folder in model/), optionally with the first MLP rows zeroed like a pruned model."""
    import torch
    from transformers import AutoModelForCausalLM

    with store.create(stage, f"{stage}-{zero_fraction}", {}, []) as out:
        shutil.copytree(folder, out.dir / "model")
        if zero_fraction:
            model = AutoModelForCausalLM.from_pretrained(out.dir / "model")
            with torch.no_grad():
                for layer in model.model.layers:
                    weight = layer.mlp.up_proj.weight
                    weight[: int(weight.shape[0] * zero_fraction)] = 0
            model.save_pretrained(out.dir / "model")
    return out.artifact


@pytest.mark.slow
def test_recovery_gap_reports_perplexities_with_intervals_and_kept_sparsity(outputs, tmp_path, embedded_model):
    from cogumi.train.fixtures import write_tiny_llama

    store = ArtifactStore(outputs / "artifacts")
    dense = write_tiny_llama(tmp_path / "dense", embedded_model, seed=0)
    _model_artifact(store, "sft", dense)
    _model_artifact(store, "prune", dense, zero_fraction=0.5)
    _model_artifact(store, "recovery", dense, zero_fraction=0.5)
    result = run_entry("evaluate", "stage=recovery_gap", "stage.run.max_windows=6", "stage.run.window=64",
                       "logger=none")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = store.artifacts("recovery_gap")[0].metrics
    for role in ("dense", "pruned", "recovered"):
        low, high = metrics[f"{role}_perplexity_ci"]
        assert low <= metrics[f"{role}_perplexity"] <= high
    assert metrics["windows"] == 6
    # Zeroed rows are measured, and the "recovered" copy kept them all (here it is the pruned model itself).
    assert metrics["pruned_mlp_sparsity"] == metrics["recovered_mlp_sparsity"] > 0.1
    assert metrics["recovered_minus_pruned_nll"] == 0 and not metrics["recovery_significant"]
    assert (store.artifacts("recovery_gap")[0].path / "recovery_gap.png").stat().st_size > 1000
    assert store.artifacts("recovery_gap")[0].manifest["headline"][0].startswith("gap closed")  # the closing table's line
