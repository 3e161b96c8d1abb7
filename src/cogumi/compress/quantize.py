"""`compress.py stage=quantize`: W4A16 weight quantization through llm-compressor (GPTQ or AWQ).

Sparse-aware: weights that were exactly zero (a pruned input) are zero again after quantization
(zero is on every symmetric grid, and llm-compressor's asymmetric ranges always include it), so a
pruned-then-quantized model keeps its sparsity; the manifest records it. The artifact holds the
compressed-tensors checkpoint in `model/`; the gguf stage decompresses it to dense for llama.cpp.
AWQ is llm-compressor's AWQModifier, where the AutoAWQ algorithm now lives (AutoAWQ itself is
deprecated upstream and CUDA-only, so it is not a back end here). `rtn` (round-to-nearest with the
same scales) is the baseline both must beat.

Fidelity: the quantized model and its input score the same held-out windows in one pass; the
manifest has both perplexities, their ratio with a paired bootstrap interval over windows, KL and
top-1 agreement, and the per-window NLLs for any later paired comparison.
"""

import contextlib
import json
import logging
import math
import re
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.compress.calibration import calibration_dataset, calibration_source
from cogumi.compress.sparsity import GROUPS, group_sparsity, layer_sparsity
from cogumi.errors import ConfigError
from cogumi.stage import StageContext
from cogumi.stats import compare_paired

log = logging.getLogger(__name__)

METHODS = ("gptq", "awq", "awq_gptq", "rtn")
GPTQ_METHODS = ("gptq", "awq_gptq")  # the methods whose rounding is GPTQ's (Hessian from calibration)
TARGETS = [f"re:.*{pattern.pattern}" for pattern in GROUPS.values()]  # projections only: embeddings/lm_head stay


def input_widths(model_dir: str | Path) -> dict[str, int]:
    """Input width of each projection kind, from config.json (read before any weights are loaded)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    return {"q/k/v/gate/up_proj": hidden, "o_proj": heads * head_dim, "down_proj": config["intermediate_size"]}


def check_group_size(group_size: int, widths: dict[str, int]) -> None:
    """Group-wise scales need every input width to be a multiple of the group size: say so before any work."""
    if group_size < 1:
        raise ConfigError(f"stage.run.group_size={group_size}: must be a positive integer")
    bad = {name: width for name, width in widths.items() if width % group_size}
    if bad:
        common = min(widths.values())
        fits = [g for g in (256, 128, 64, 32, 16) if all(w % g == 0 for w in widths.values())]
        raise ConfigError(f"stage.run.group_size={group_size} does not divide the input width of {bad} "
                          f"(smallest width {common}); group sizes that fit this model: {fits}")


def _scheme(bits: int, group_size: int, symmetric: bool, observer: str = "minmax") -> dict:
    weights = {"num_bits": bits, "type": "int", "symmetric": symmetric, "strategy": "group", "group_size": group_size,
               "observer": observer}
    return {"group_0": {"targets": TARGETS, "weights": weights}}


def _recipe(method: str, bits: int, group_size: int, symmetric: bool, dampening_frac: float = 0.01,
            actorder: str | None = "static", observer: str = "minmax", awq_grid: int = 20) -> list:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    scheme = _scheme(bits, group_size, symmetric, observer)
    if method == "rtn":  # round-to-nearest with the same scales: the baseline GPTQ and AWQ must beat
        return [QuantizationModifier(config_groups=scheme)]
    gptq = GPTQModifier(config_groups=scheme, dampening_frac=dampening_frac, actorder=actorder)
    if method == "gptq":
        return [gptq]
    from llmcompressor.modifiers.transform.awq import AWQModifier

    # AWQ only rescales channels; the quantizer after it rounds: round-to-nearest (`awq`) or GPTQ (`awq_gptq`).
    return [AWQModifier(duo_scaling=True, n_grid=awq_grid),
            gptq if method == "awq_gptq" else QuantizationModifier(config_groups=scheme)]


def run(ctx: StageContext, model: str, method: str, bits: int, group_size: int, symmetric: bool,
        calibration_data: str | None, calibration_fallback: str, calibration_samples: int, max_seq_length: int,
        heldout_text: str, fidelity_windows: int, window: int, batch_size: int, seed: int = 1234,
        pack_calibration: bool = False, dampening_frac: float = 0.01, actorder: str | None = "static",
        awq_grid: int = 20,
        observer: str = "minmax") -> Artifact:
    if method not in METHODS:
        raise ConfigError(f"stage.run.method={method!r}: expected one of {METHODS}")
    model_input = ctx.model_input(model)
    widths = input_widths(model_input.source)
    check_group_size(group_size, widths)
    calibration = calibration_source(ctx.store, calibration_data, calibration_fallback)
    inputs = {"model": model_input.identity, "calibration": calibration, "heldout": heldout_text}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    from llmcompressor import oneshot

    from cogumi.compress.cpu_workarounds import skip_pin_memory_without_accelerator
    from cogumi.models import load_causal_lm

    lm, tokenizer = load_causal_lm(model_input.source, ctx.hardware, ctx.model.revision)
    zero_masks = {name: (m.weight == 0) for name, m in lm.named_modules()
                  if any(p.search(name) for p in GROUPS.values()) and (m.weight == 0).any()}
    dataset = calibration_dataset(calibration, tokenizer, calibration_samples, max_seq_length, seed,
                                  pack=pack_calibration)
    tokens = sum(map(len, dataset["input_ids"]))
    log.info("%s W%dA16 group %d on %d calibration samples (%d tokens)", method, bits, group_size, len(dataset), tokens)
    if method in GPTQ_METHODS and tokens < 2 * max(widths.values()):
        # Fewer tokens than inputs: the Hessian is rank-deficient and GPTQ fits the calibration text (the
        # embedded model's 841 chat tokens made it worse than round-to-nearest on held-out text).
        log.warning("GPTQ calibration has %d tokens for layers up to %d inputs wide: raise calibration_samples "
                    "(with pack_calibration) to at least %d tokens", tokens, max(widths.values()),
                    2 * max(widths.values()))
    recipe = _recipe(method, bits, group_size, symmetric, dampening_frac, actorder, observer, awq_grid)
    with skip_pin_memory_without_accelerator(), _layer_errors() as errors:
        oneshot(model=lm, tokenizer=tokenizer, dataset=dataset, recipe=recipe,
                num_calibration_samples=len(dataset), max_seq_length=max_seq_length)
    _restore_zeros(lm, zero_masks)
    groups = group_sparsity(layer_sparsity(lm))
    with ctx.create_artifact(inputs) as out:
        out.metrics.update({f"measured_{g}_sparsity": v for g, v in groups.items() if g in GROUPS})
        out.metrics["calibration_tokens"] = tokens
        if errors:
            worst = max(errors, key=errors.get)
            out.metrics.update(gptq_max_layer_error=errors[worst], gptq_median_layer_error=_median(errors.values()))
            out.extra["gptq_layer_errors"] = errors
            log.info("GPTQ error: largest %.1f (%s), median %.1f", errors[worst], worst, _median(errors.values()))
        if fidelity_windows:
            fidelity, nlls = _fidelity(lm, model_input.source, tokenizer, ctx, heldout_text, window, fidelity_windows,
                                       batch_size, seed)
            out.metrics.update(fidelity)
            out.extra["nll_per_window"] = nlls
            low, high = fidelity["perplexity_ratio_ci"]
            out.extra["headline"] = [
                f"ppl ratio {fidelity['perplexity_ratio']:.3f} [{low:.3f}, {high:.3f}] n={fidelity_windows} windows",
                f"KL {fidelity['kl_mean']:.3f}, top-1 {fidelity['top1_agreement']:.3f}; {tokens} calib tokens"]
        lm.save_pretrained(out.dir / "model", save_compressed=True)
        tokenizer.save_pretrained(out.dir / "model")
        out.metrics["model_mb"] = round(sum(f.stat().st_size for f in (out.dir / "model").glob("*.safetensors")) / 1e6, 2)
        out.extra["quantization"] = {"method": method, "bits": bits, "group_size": group_size,
                                     "symmetric": symmetric, "observer": observer,
                                     "sparse_input_layers": len(zero_masks),
                                     "calibration": {"samples": len(dataset), "tokens": tokens,
                                                     "packed": pack_calibration},
                                     **({"dampening_frac": dampening_frac, "actorder": actorder}
                                        if method in GPTQ_METHODS else {}),
                                     **({"awq_grid": awq_grid} if method.startswith("awq") else {})}
    return out.artifact


@contextlib.contextmanager
def _layer_errors():
    """GPTQ's per-layer error (llm-compressor logs it through loguru after each module), by module name."""
    from loguru import logger

    errors, current = {}, {}

    def sink(message) -> None:
        text = message.record["message"]
        if (named := re.search(r"Quantizing \d+ module\(s\): \['([^']+)'", text)) is not None:
            current["name"] = named.group(1)
        elif (error := re.match(r"error ([\d.]+)", text)) is not None and "name" in current:
            errors[current["name"]] = float(error.group(1))

    handle = logger.add(sink, level=0)
    try:
        yield errors
    finally:
        logger.remove(handle)


def _median(values) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _restore_zeros(lm, zero_masks: dict) -> None:
    """GPTQ's error feedback writes into pruned positions; put the pruned zeros back."""
    import torch

    modules = dict(lm.named_modules())
    with torch.no_grad():
        for name, mask in zero_masks.items():
            modules[name].weight.masked_fill_(mask, 0)


def perplexity_ratio(nlls: list[float], reference_nlls: list[float], seed: int = 0) -> dict:
    """Perplexity ratio model / reference on the same windows, with the paired bootstrap interval.

    Every window has the same token count, so the ratio is exp(mean per-window NLL difference) and its
    interval is the exponential of the paired interval of that difference (cogumi.stats).
    """
    paired = compare_paired(nlls, reference_nlls, seed=seed)
    return {"perplexity_ratio": round(math.exp(paired.difference), 4),
            "perplexity_ratio_ci": [round(math.exp(paired.low), 4), round(math.exp(paired.high), 4)],
            "perplexity_ratio_p_value": paired.p_value, "fidelity_windows": paired.n}


def _fidelity(quantized, reference_source, tokenizer, ctx, heldout_text, window, max_windows, batch_size,
              seed) -> tuple[dict, dict]:
    """Perplexity of both (per window, for the paired ratio), KL and top-1 agreement, in one pass over the windows."""
    from cogumi.data.text import read_documents
    from cogumi.models.fidelity import HFCausalLM, fidelity

    reference = HFCausalLM(reference_source, ctx.hardware).model
    report = fidelity(quantized, reference, tokenizer, read_documents(heldout_text), window, max_windows, batch_size,
                      window_nlls=True)
    nlls = {"model": report.pop("model_nlls"), "reference": report.pop("reference_nlls")}
    report.update(perplexity_ratio(nlls["model"], nlls["reference"], seed))
    log.info("fidelity: ppl ratio %.3f %s (n=%d windows)", report["perplexity_ratio"], report["perplexity_ratio_ci"],
             len(nlls["model"]))
    return report, {k: [round(v, 5) for v in values] for k, values in nlls.items()}
