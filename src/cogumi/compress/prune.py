"""`compress.py stage=prune [sparsity=0.65]`: one-shot SparseGPT or Wanda pruning through llm-compressor.

Attention and MLP projections get their own sparsity (the seeds: attention 60 %, MLP 70 %);
embeddings and the (tied) LM head are never pruned. The manifest records the sparsity *measured*
in every layer after pruning, not the requested one, and the model's fidelity to its input.
"""

import logging
import math

from cogumi.artifacts import Artifact
from cogumi.compress.calibration import calibration_dataset, calibration_source
from cogumi.compress.sparsity import GROUPS, group_sparsity, layer_sparsity
from cogumi.errors import ConfigError
from cogumi.stage import StageContext

log = logging.getLogger(__name__)

METHODS = ("sparsegpt", "wanda")
STRUCTURES = ("unstructured", "2:4")


def _check(method: str, structure: str, sparsities: dict[str, float]) -> None:
    if method not in METHODS:
        raise ConfigError(f"stage.run.method={method!r}: expected one of {METHODS}")
    if structure not in STRUCTURES:
        raise ConfigError(f"stage.run.structure={structure!r}: expected one of {STRUCTURES}")
    for group, value in sparsities.items():
        if not 0.0 < value < 1.0:
            raise ConfigError(f"stage.run.{group}_sparsity={value}: sparsity must lie strictly between 0 and 1")
        if structure == "2:4" and not math.isclose(value, 0.5):
            raise ConfigError(f"stage.run.{group}_sparsity={value}: a 2:4 pattern is exactly 50 % sparse; "
                              "set sparsity=0.5 or structure=unstructured")


def _modifiers(method: str, structure: str, sparsities: dict[str, float]) -> list:
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    cls = SparseGPTModifier if method == "sparsegpt" else WandaPruningModifier
    mask = "2:4" if structure == "2:4" else "0:0"
    # One modifier per group, each targeting only its projections: embeddings and lm_head stay dense.
    return [cls(sparsity=value, mask_structure=mask, targets=[f"re:.*{GROUPS[group].pattern}"])
            for group, value in sparsities.items()]


def run(ctx: StageContext, model: str, method: str, structure: str, sparsity: float,
        attention_sparsity: float | None, mlp_sparsity: float | None, calibration_data: str | None,
        calibration_fallback: str, calibration_samples: int, max_seq_length: int, heldout_text: str,
        fidelity_windows: int, window: int, batch_size: int, seed: int = 1234) -> Artifact:
    from llmcompressor import oneshot

    from cogumi.models import load_causal_lm

    sparsities = {"attention": attention_sparsity if attention_sparsity is not None else sparsity,
                  "mlp": mlp_sparsity if mlp_sparsity is not None else sparsity}
    _check(method, structure, sparsities)
    model_input = ctx.model_input(model)
    calibration = calibration_source(ctx.store, calibration_data, calibration_fallback)
    inputs = {"model": model_input.identity, "calibration": calibration, "heldout": heldout_text}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    lm, tokenizer = load_causal_lm(model_input.source, ctx.hardware, ctx.model.revision)
    dataset = calibration_dataset(calibration, tokenizer, calibration_samples, max_seq_length, seed)
    log.info("pruning with %s (%s) to %s on %d calibration samples", method, structure, sparsities, len(dataset))
    oneshot(model=lm, tokenizer=tokenizer, dataset=dataset, recipe=_modifiers(method, structure, sparsities),
            num_calibration_samples=len(dataset), max_seq_length=max_seq_length)
    layers = layer_sparsity(lm)
    groups = group_sparsity(layers)
    with ctx.create_artifact(inputs) as out:
        # Dense safetensors: pruned zeros stay explicit, so transformers and llama.cpp's converter read it.
        lm.save_pretrained(out.dir / "model", save_compressed=False)
        tokenizer.save_pretrained(out.dir / "model")
        out.metrics.update({f"measured_{g}_sparsity": v for g, v in groups.items()})
        out.metrics.update({f"requested_{g}_sparsity": v for g, v in sparsities.items()})
        # Size axis of the sparsity sweep: what a sparse format would have to store (tied weights once).
        out.metrics["nonzero_params_m"] = round(sum((p != 0).sum().item() for p in lm.parameters()) / 1e6, 3)
        if fidelity_windows:
            out.metrics.update(_fidelity(lm, model_input.source, tokenizer, ctx, heldout_text, window,
                                         fidelity_windows, batch_size))
        out.extra["sparsity"] = {"method": method, "structure": structure, "requested": sparsities,
                                 "measured_by_group": groups, "measured_by_layer": layers}
    return out.artifact


def _fidelity(pruned, reference_source, tokenizer, ctx, heldout_text, window, max_windows, batch_size) -> dict:
    from cogumi.data.text import read_documents
    from cogumi.models.fidelity import HFCausalLM, fidelity

    reference = HFCausalLM(reference_source, ctx.hardware)
    report = fidelity(pruned, reference.model, tokenizer, read_documents(heldout_text), window, max_windows,
                      batch_size)
    return {k: report[k] for k in ("perplexity", "reference_perplexity", "kl_mean", "top1_agreement")}
