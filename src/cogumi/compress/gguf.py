"""`compress.py stage=gguf`: HF model → F16 GGUF → llama.cpp quant types, each checked against F16.

Every quantized file is compared to the F16 export on held-out text (KL divergence, top-1 agreement,
perplexity) and on fixed prompts; a type above `max_kl` fails the stage, so nothing unfaithful is
written. Quantizing is always done from the F16 export, never from an already-quantized GGUF.
With `imatrix_text`, llama.cpp's `llama-imatrix` computes an importance matrix of the F16 export on
that calibration text (never the held-out text) and `llama-quantize --imatrix` uses it. With
`llama_kld_chunks`, llama.cpp's own `llama-perplexity --kl-divergence` measures KLD and top-1 of
every type too: the anchor's number, as a cross-check of ours.

On SmolLM2-135M (576 wide) the k-quant names mislead: rows of 576 are not a multiple of the 256
k-quant block, so llama.cpp falls back per tensor (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). From
llama-quantize's per-tensor log (`llama_cli.tensor_types`): "Q4_K_M" is 166 Q5_0 + 15 Q8_0 (token_embd,
14 attn_v) + 16 Q4_K + 14 Q6_K (ffn_down, 1536 wide) tensors, 105.5 MB; "Q5_K_M" is the same list with
Q5_1 for the 166 and Q5_K for the 16 (112.1 MB). Nothing else differs. Why Q5_K_M then scores the
*higher* KL (base model, 16 held-out windows: 0.079 [0.073, 0.084] vs 0.059 [0.054, 0.066], paired
+0.019 [+0.016, +0.022], p=0.001): dequantized with llama.cpp's gguf-py, Q5_1's relative RMS weight
error is ~5 % above Q5_0's on every role (attn_q 0.0473 vs 0.0450, ffn_up 0.0459 vs 0.0434, ...) and
Q5_K's above Q4_K's on the 16 ffn_down (0.0200 vs 0.0186). Q5_1 spends its extra half bit per weight on
a per-block minimum that zero-centred weights do not need, and its 31 steps over [min, max] are coarser
than Q5_0's 16 steps over [0, max|w|] on each side. benchmarks/gguf_pareto.py measures the KL of Q4_K_M
with Q5_1 in place of its Q5_0 tensors, which isolates that cause. Without an imatrix llama.cpp
quantizes Q5_0/Q5_1 by plain rounding; with one (`imatrix_text`) it searches each block's scale (and
min) against the importance weights, and the order flips (benchmarks/results/gguf_pareto.json, base
model, 16 windows, C4 imatrix 64x256): Q5_K_M 0.0785 -> 0.0076 [0.0069, 0.0084], Q4_K_M 0.0595 -> 0.0365
[0.0334, 0.0400].
"""

import logging
import tempfile
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.assets import converter_dir
from cogumi.compress import llama_cli
from cogumi.compress.gguf_export import (convert_hf_to_gguf, decompress_to_dense, ftype_of, is_compressed_tensors,
                                         quantize_gguf)
from cogumi.data.text import read_documents
from cogumi.errors import CogumiError, ConfigError
from cogumi.stage import StageContext

log = logging.getLogger(__name__)


class FidelityGateError(CogumiError):
    """A compressed model strays further from its reference than the configured threshold."""


def _check_knobs(types: list[str], reference_type: str, max_kl) -> None:
    if not types:
        raise ConfigError("stage.run.types is empty: name at least one llama.cpp quant type (e.g. [Q4_K_M])")
    for quant_type in types:
        ftype_of(quant_type)
    if reference_type.upper() in (t.upper() for t in types):
        raise ConfigError(f"stage.run.types lists the reference type {reference_type}: it is always written")
    if max_kl is not None and not isinstance(max_kl, (int, float, dict)):
        raise ConfigError(f"stage.run.max_kl={max_kl!r}: a number, a {{type: number}} map, or null")


def _threshold(max_kl, quant_type: str) -> float | None:
    return max_kl.get(quant_type) if isinstance(max_kl, dict) else max_kl


def _calibration_text(source: str, target: Path) -> Path:
    """llama-imatrix reads plain text: the calibration documents, one after another."""
    target.write_text("\n\n".join(read_documents(source)))
    return target


def run(ctx: StageContext, model: str, types: list[str], reference_type: str, text_file: str, window: int,
        max_windows: int | None, batch_size: int, prompts: list[str], max_new_tokens: int,
        max_kl=None, imatrix_text: str | None = None, imatrix_chunks: int = 32, imatrix_ctx: int = 256,
        llama_kld_chunks: int = 0, quantize_args: list[str] = ()) -> Artifact:
    from cogumi.models import load_tokenizer
    from cogumi.models.fidelity import GGUFCausalLM, fidelity

    types = [str(t).upper() for t in types]
    _check_knobs(types, reference_type, max_kl)
    model_input = ctx.model_input(model)
    if imatrix_text is not None and Path(imatrix_text).resolve() == Path(text_file).resolve():
        raise ConfigError("stage.run.imatrix_text is the held-out text_file: calibrate on other text")
    inputs = {"model": model_input.identity, "text": text_file,
              **({"imatrix_text": imatrix_text} if imatrix_text else {})}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    documents = read_documents(text_file)
    tokenizer = load_tokenizer(model_input.source)
    with ctx.create_artifact(inputs) as out, tempfile.TemporaryDirectory(dir=ctx.outputs_root) as scratch:
        gguf_dir = out.dir / "gguf"
        gguf_dir.mkdir()
        source = Path(model_input.source)
        if is_compressed_tensors(source):
            source = decompress_to_dense(source, Path(scratch) / "dense")
        reference_file = convert_hf_to_gguf(source, gguf_dir / f"{reference_type.upper()}.gguf", converter_dir(),
                                            reference_type)
        reference_mb = reference_file.stat().st_size / 1e6
        imatrix = None
        if imatrix_text:
            imatrix = llama_cli.compute_imatrix(reference_file, _calibration_text(imatrix_text, Path(scratch) / "calib.txt"),
                                                gguf_dir / "imatrix.gguf", imatrix_chunks, imatrix_ctx, ctx.hardware.threads)
        kld_base = None
        if llama_kld_chunks:
            kld_base = llama_cli.save_kld_base(reference_file, Path(text_file), Path(scratch) / "base.kld", window,
                                               llama_kld_chunks, ctx.hardware.threads)
        n_ctx = max(window, 512)
        reference = GGUFCausalLM(reference_file, n_ctx=n_ctx, threads=ctx.hardware.threads)
        out.metrics[f"{reference_type.upper()}/size_mb"] = round(reference_mb, 2)
        report = {}
        try:
            for quant_type in types:
                target = gguf_dir / f"{quant_type}.gguf"
                notes = quantize_gguf(reference_file, target, quant_type, ctx.hardware.threads, imatrix,
                                      [str(a) for a in quantize_args])
                quantized = GGUFCausalLM(target, n_ctx=n_ctx, threads=ctx.hardware.threads)
                try:
                    result = fidelity(quantized, reference, tokenizer, documents, window, max_windows, batch_size,
                                      prompts, max_new_tokens)
                finally:
                    quantized.close()
                size_mb = target.stat().st_size / 1e6
                result.update(size_mb=round(size_mb, 2), ratio_to_reference=round(size_mb / reference_mb, 4), **notes)
                if kld_base is not None:
                    anchor = llama_cli.kl_divergence(target, kld_base, window, Path(scratch) / f"{quant_type}.kld.log",
                                                     ctx.hardware.threads)
                    result.update({f"llama_{k}": round(v, 6) if isinstance(v, float) else v for k, v in anchor.items()})
                report[quant_type] = result
                limit = _threshold(max_kl, quant_type)
                if limit is not None and result["kl_mean"] > limit:
                    raise FidelityGateError(f"{quant_type}: KL {result['kl_mean']:.4f} vs {reference_type} exceeds "
                                            f"stage.run.max_kl={limit}; no artifact written")
                out.metrics.update({f"{quant_type}/{k}": result[k] for k in
                                    ("size_mb", "ratio_to_reference", "kl_mean", "top1_agreement", "perplexity",
                                     "prompt_agreement", "llama_kld", "llama_kld_uncertainty", "llama_same_top_p",
                                     "llama_same_top_p_uncertainty", "llama_ppl_ratio") if k in result})
        finally:
            reference.close()
        out.metrics["reference_perplexity"] = report[types[0]]["reference_perplexity"]
        # Single names for sweeps over one type at a time (sweeps/quant_type.yaml).
        out.metrics.update(kl_mean=report[types[-1]]["kl_mean"], size_mb=report[types[-1]]["size_mb"])
        # The closing table's lines: each type's fidelity at a glance (KL and top-1 vs the reference, size).
        out.extra["headline"] = [f"{t} KL {r['kl_mean']:.4f}, top-1 {r['top1_agreement']:.3f}, {r['size_mb']:.1f} MB"
                                 for t, r in report.items()][:2] + [
            f"imatrix {imatrix_chunks} x {imatrix_ctx} tokens" if imatrix else "no imatrix"]
        out.extra["fidelity"] = {"reference": f"gguf/{reference_type.upper()}.gguf", "by_type": report,
                                 "imatrix": {"text": imatrix_text, "chunks": imatrix_chunks, "ctx": imatrix_ctx}
                                 if imatrix else None}
    return out.artifact
