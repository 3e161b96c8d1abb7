"""llama.cpp's own tools on GGUF files: importance matrix, imatrix-aware quantization, KL divergence.

`llama-imatrix` collects per-column activation statistics from calibration text; `llama-quantize
--imatrix` then spends each tensor's error where the activations are large (the k-quants, and the
Q5_0/Q5_1 fallbacks SmolLM2's 576-wide tensors get, all use it). `llama-perplexity --kl-divergence`
is the anchor's own KLD / top-1 ("Same top p") measurement, a cross-check of ours. Each tool's
output goes to a log file next to what it produced.
"""

import logging
import math
import re
import subprocess
from pathlib import Path

from cogumi.errors import CogumiError
from cogumi.llama_tools import tool_path

log = logging.getLogger(__name__)


class LlamaToolError(CogumiError):
    """A llama.cpp tool exited non-zero (its log names the reason)."""


def _run(tool: str, args: list, log_file: Path, threads: int | None) -> str:
    cmd = [str(tool_path(tool)), *map(str, args)]
    if threads:
        cmd += ["-t", str(threads)]
    log.info("$ %s", " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True)
    output = result.stdout + result.stderr
    log_file.write_text(f"$ {' '.join(cmd)}\n{output}")
    if result.returncode != 0:
        tail = " | ".join(output.strip().splitlines()[-3:])
        raise LlamaToolError(f"{tool} failed (exit {result.returncode}): {tail} (full log: {log_file})")
    return output


def compute_imatrix(model: Path, text_file: Path, out_file: Path, chunks: int, ctx: int,
                    threads: int | None = None) -> Path:
    """Importance matrix of `model` over the first `chunks` windows of `ctx` tokens of the text."""
    _run("llama-imatrix", ["-m", model, "-f", text_file, "-o", out_file, "--chunks", chunks, "-c", ctx,
                           "--no-ppl"], out_file.with_suffix(".log"), threads)
    return out_file


def quantize(source: Path, out_file: Path, quant_type: str, imatrix: Path | None = None,
             threads: int | None = None, extra_args: list[str] = ()) -> dict:
    """`llama-quantize [--imatrix] [extra_args]`: how many tensors fell back to another type (shape
    rules) and the type each tensor got. `extra_args` are llama-quantize options placed before the
    files, e.g. ["--token-embedding-type", "f16"] or ["--tensor-type", "ffn_down=q6_k"]."""
    args = (["--imatrix", imatrix] if imatrix else []) + list(extra_args) + [source, out_file, quant_type]
    output = _run("llama-quantize", args, out_file.with_suffix(".log"), None)
    fallbacks = re.search(r"(\d+) of (\d+) tensor\(s\) required fallback", output)
    return {"fallback_tensors": int(fallbacks.group(1)) if fallbacks else 0, "imatrix": imatrix is not None,
            "tensor_types": tensor_types(output)}


# llama-quantize prints one line per tensor: `[  3/ 272]  blk.0.attn_k.weight - [ 576, 192, ...], type =
# f16, converting to q5_0 .. size = ...` (or `size = ...` alone for a tensor it copies, e.g. norms).
_TENSOR_LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[[^\]]*\], type =\s*(\w+),(?: converting to (\w+))?",
                          re.MULTILINE)


def tensor_types(output: str) -> dict[str, str]:
    """Tensor name -> the type llama-quantize wrote (after any fallback), from its log."""
    return {name: (converted or kept).lower() for name, kept, converted in _TENSOR_LINE.findall(output)}


def type_mix(types: dict[str, str]) -> dict[str, dict[str, int]]:
    """How many tensors of each role (blk.N. stripped: attn_q, ffn_down, token_embd, ...) got each type."""
    mix: dict[str, dict[str, int]] = {}
    for name, kind in types.items():
        role = re.sub(r"^blk\.\d+\.", "", name).removesuffix(".weight")
        mix.setdefault(role, {})
        mix[role][kind] = mix[role].get(kind, 0) + 1
    return {role: dict(sorted(kinds.items())) for role, kinds in sorted(mix.items())}


def save_kld_base(reference: Path, text_file: Path, base_file: Path, ctx: int, chunks: int,
                  threads: int | None = None) -> Path:
    """The reference's logits over the text, for later `--kl-divergence` runs against it."""
    _run("llama-perplexity", ["-m", reference, "-f", text_file, "--kl-divergence-base", base_file, "-c", ctx,
                              "--chunks", chunks], base_file.with_suffix(".log"), threads)
    return base_file


_NUMBER = r"(-?[\d.]+|-?nan)"  # llama.cpp prints -nan for an uncertainty it cannot estimate
_KLD_LINES = {
    "ppl_ratio": rf"Mean PPL\(Q\)/PPL\(base\)\s*:\s*{_NUMBER}\s*±\s*{_NUMBER}",
    "kld": rf"Mean\s+KLD:\s*{_NUMBER}\s*±\s*{_NUMBER}",
    "same_top_p": rf"Same top p:\s*{_NUMBER}\s*±\s*{_NUMBER}\s*%",
}


def parse_kld(output: str) -> dict:
    """Mean ± uncertainty of KLD, top-1 agreement (fraction) and PPL ratio from llama-perplexity."""
    parsed = {}
    for key, pattern in _KLD_LINES.items():
        match = re.search(pattern, output)
        if match is None:
            raise LlamaToolError(f"llama-perplexity output has no '{key}' line")
        value, uncertainty = float(match.group(1)), float(match.group(2))
        scale = 0.01 if key == "same_top_p" else 1.0
        parsed[key] = value * scale
        parsed[f"{key}_uncertainty"] = None if math.isnan(uncertainty) else uncertainty * scale
    tokens = re.search(r"computing over (\d+) chunks, n_ctx=(\d+)", output)
    if tokens:
        parsed["chunks"], parsed["n_ctx"] = int(tokens.group(1)), int(tokens.group(2))
    return parsed


def kl_divergence(model: Path, base_file: Path, ctx: int, log_file: Path, threads: int | None = None) -> dict:
    """llama-perplexity's KLD and top-1 of `model` against the saved reference logits (the second half
    of each `ctx` chunk is scored, llama.cpp's convention; `ctx` must be the base file's)."""
    output = _run("llama-perplexity", ["-m", model, "--kl-divergence-base", base_file, "--kl-divergence",
                                       "-c", ctx], log_file, threads)
    return parse_kld(output)
