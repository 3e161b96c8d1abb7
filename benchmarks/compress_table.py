"""Size and fidelity table of the embedded model across compression formats (the compress benchmark).

Rows: HF fp32 / bf16, round-to-nearest, GPTQ, AWQ and AWQ+GPTQ W4A16 (llm-compressor, each through `compress.py
stage=quantize` with the same scheme and calibration text, scored on the same windows),
GGUF F16 / Q8_0 / Q6_K / Q5_K_M / Q4_K_M, each k-quant with and without an importance matrix
(llama.cpp's llama-imatrix on C4 calibration text), zstd-packed GGUFs, and a 50 %-pruned model's
packed GGUFs (GGUF stores pruned zeros densely; packing is where sparsity shows on disk). For each:
MB, ratio to bf16, KL vs the F16 GGUF on held-out text, top-1 agreement, perplexity (each with a 95 %
bootstrap interval over the windows; perplexity also as a paired ratio to F16), decode tok/s;
GGUF rows also carry llama.cpp's own `llama-perplexity --kl-divergence` KLD and top-1 (± its
standard error) over `--kld-chunks` chunks, the anchor's measurement.
The baseline of the same run is the F16 GGUF (KL 0 by definition) and the bf16 size.
Anchor from llama.cpp: Llama-3-8B Q4_K_M is 29 % of F16 size at KLD 0.031.

    .venv/bin/python benchmarks/compress_table.py --windows 8           # everything (~10 min alone)
    .venv/bin/python benchmarks/compress_table.py --skip-llmcompressor  # GGUF + packs only
    .venv/bin/python benchmarks/compress_table.py --w4a16-only --windows 16   # F16 + RTN/GPTQ/AWQ rows only
        (writes benchmarks/results/gptq_awq_table.json, leaving the full table's file alone)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "compress_table.json"
W4A16_RESULTS = ROOT / "benchmarks" / "results" / "gptq_awq_table.json"
# The quantize stage's W4A16 setting (conf/stage/quantize.yaml + the main job's line): one scheme for all three
# methods, general-text calibration packed into full rows (never the held-out text).
W4A16 = ["stage.run.calibration_data=null", "stage.run.pack_calibration=true", "stage.run.max_seq_length=256",
         "stage.run.symmetric=false", "stage.run.group_size=32", "stage.run.observer=mse", "stage.run.dampening_frac=0.1"]
TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"]
PROMPT = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]


def _mb(path: Path) -> float:
    files = [path] if path.is_file() else list(path.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) / 1e6


def _decode_tok_s(scorer, tokens: int = 64) -> float:
    """Greedy chat reply speed (prefill of a short prompt included), in generated tokens per second."""
    started = time.time()
    text = scorer.reply(PROMPT, tokens)
    elapsed = time.time() - started
    if hasattr(scorer, "llm"):
        produced = len(scorer.llm.tokenize(text.encode(), add_bos=False))
    else:
        produced = len(scorer.tokenizer(text, add_special_tokens=False)["input_ids"])
    return round(max(produced, 1) / elapsed, 1)


class _CachedLogits:
    """The F16 reference scored once per window, reused by every row (the windows are few)."""

    device = "cpu"

    def __init__(self, scorer):
        self.scorer, self.cache = scorer, {}

    def __call__(self, input_ids):
        key = tuple(input_ids.flatten().tolist())
        if key not in self.cache:
            self.cache[key] = self.scorer(input_ids=input_ids)
        return self.cache[key]


def _save(rows: list[dict], path: Path = RESULTS) -> None:
    """Partial results after every row: an interrupted run keeps what it measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"partial": True, "rows": rows}, indent=2))


def _window_scores(scorer, reference, windows) -> dict:
    """Per window: the model's NLL, the reference's NLL, KL(reference ‖ model) and top-1 agreement."""
    import torch

    rows = {"nll": [], "reference_nll": [], "kl": [], "top1": []}
    with torch.no_grad():
        for window in windows:
            batch = window[None]
            ref = torch.log_softmax(reference(input_ids=batch).logits.float().cpu(), -1)[0]
            out = torch.log_softmax(scorer(input_ids=batch.to(scorer.device)).logits.float().cpu(), -1)[0]
            targets = window[1:, None]
            rows["nll"].append(-out[:-1].gather(-1, targets).mean().item())
            rows["reference_nll"].append(-ref[:-1].gather(-1, targets).mean().item())
            rows["kl"].append((ref.exp() * (ref - out)).sum(-1).mean().item())
            rows["top1"].append((ref.argmax(-1) == out.argmax(-1)).float().mean().item())
    return rows


def _with_intervals(scores: dict) -> dict:
    """Point values with 95 % bootstrap intervals over windows; perplexity also as a paired ratio to F16."""
    import math

    from cogumi.stats import compare_paired, mean_estimate

    kl, top1, nll = (mean_estimate(scores[k], binary=False) for k in ("kl", "top1", "nll"))
    ratio = compare_paired(scores["nll"], scores["reference_nll"])
    return {"kl_vs_f16": round(kl.value, 5), "kl_ci": [round(kl.low, 5), round(kl.high, 5)],
            "top1_vs_f16": round(top1.value, 4), "top1_ci": [round(top1.low, 4), round(top1.high, 4)],
            "ppl": round(math.exp(nll.value), 3), "ppl_ci": [round(math.exp(nll.low), 3), round(math.exp(nll.high), 3)],
            "ppl_ratio_to_f16": round(math.exp(ratio.difference), 4),
            "ppl_ratio_ci": [round(math.exp(ratio.low), 4), round(math.exp(ratio.high), 4)]}


def _quantized_model(method: str, outputs: Path, samples: int, threads: int | None) -> tuple[Path, float]:
    env = {**os.environ, "COGUMI_OUTPUTS": str(outputs)}
    cmd = [sys.executable, str(ROOT / "compress.py"), "stage=quantize", f"stage.run.method={method}",
           f"stage.run.calibration_samples={samples}", "stage.run.fidelity_windows=0", "logger=none", *W4A16,
           *([f"hardware.threads={threads}"] if threads else [])]
    started = time.time()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    seconds = time.time() - started
    print(f"# {method}: {seconds:.0f} s", file=sys.stderr)
    return max((outputs / "artifacts" / "quantize").glob("*/model"), key=lambda p: p.stat().st_mtime), seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=8, help="256-token held-out windows for KL/ppl")
    parser.add_argument("--level", type=int, default=19, help="zstd level of the packs")
    parser.add_argument("--calibration-samples", type=int, default=16, help="GPTQ / AWQ calibration samples")
    parser.add_argument("--skip-llmcompressor", action="store_true", help="no GPTQ / AWQ / pruning rows")
    parser.add_argument("--w4a16-only", action="store_true", help="only F16 (reference) and the RTN/GPTQ/AWQ rows")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--kld-chunks", type=int, default=40, help="llama-perplexity KLD chunks of 256 tokens")
    parser.add_argument("--imatrix-chunks", type=int, default=64, help="llama-imatrix chunks of 256 tokens")
    args = parser.parse_args()

    from cogumi.assets import converter_dir, embedded_model_dir
    from cogumi.compress import llama_cli
    from cogumi.compress.gguf_export import convert_hf_to_gguf, quantize_gguf
    from cogumi.compress.zstd_pack import pack_file
    from cogumi.data.text import read_documents
    from cogumi.models.fidelity import GGUFCausalLM, HFCausalLM, scoring_windows
    from cogumi.hardware import HardwareSpec
    from cogumi.models import load_tokenizer

    import torch

    hardware = HardwareSpec(name="cpu", threads=args.threads)
    hardware.apply_threads()
    model_dir = embedded_model_dir()
    tokenizer = load_tokenizer(model_dir)
    heldout = ROOT / ".cache/cogumi/data/llamafactory/data/wiki_demo.txt"
    windows = scoring_windows(tokenizer, read_documents(heldout), 256, args.windows)
    outputs = Path(os.environ.get("COGUMI_OUTPUTS", ROOT / "outputs"))  # scratch beside the caller's outputs
    outputs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="compress-bench-", dir=outputs))
    rows = []

    f16 = convert_hf_to_gguf(model_dir, work / "F16.gguf", converter_dir())
    reference = GGUFCausalLM(f16, n_ctx=512)
    cached_reference = _CachedLogits(reference)
    bf16_dir = work / "bf16"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).save_pretrained(bf16_dir)
    tokenizer.save_pretrained(bf16_dir)
    bf16_mb = _mb(bf16_dir)

    results = W4A16_RESULTS if args.w4a16_only else RESULTS

    def score(name: str, scorer, size_mb: float, note: str = "", gguf: Path | None = None) -> None:
        rows.append({"format": name, "mb": round(size_mb, 1), "ratio_to_bf16": round(size_mb / bf16_mb, 3),
                     **_with_intervals(_window_scores(scorer, cached_reference, windows)),
                     "decode_tok_s": _decode_tok_s(scorer), "note": note})
        if gguf is not None and gguf != f16:
            anchor = llama_cli.kl_divergence(gguf, kld_base, 256, work / f"{gguf.stem}.kld.log")
            rows[-1].update({f"llama_{k}": round(v, 5) if isinstance(v, float) else v for k, v in anchor.items()})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        _save(rows, results)

    if args.w4a16_only:
        score("GGUF F16", reference, _mb(f16), "llama.cpp baseline")
        _w4a16_rows(score, work, hardware, args.calibration_samples, args.threads)
        _finish(args, rows, results, bf16_mb)
        reference.close()
        return

    # llama.cpp's own tools: reference logits for KLD, importance matrix from C4 (never the held-out text).
    kld_base = llama_cli.save_kld_base(f16, heldout, work / "f16.kld", 256, args.kld_chunks)
    calibration = work / "c4.txt"
    calibration.write_text("\n\n".join(read_documents(ROOT / ".cache/cogumi/data/llamafactory/data/c4_demo.jsonl")))
    imatrix = llama_cli.compute_imatrix(f16, calibration, work / "imatrix.gguf", args.imatrix_chunks, 256)

    # Fast llama.cpp rows first, so an interrupted run still has them (partial JSON after every row).
    score("GGUF F16", reference, _mb(f16), "llama.cpp baseline")
    ggufs = {"F16": f16}
    for quant_type in TYPES:
        for with_imatrix in (False, True) if "_K" in quant_type else (False,):
            name = f"{quant_type}+imatrix" if with_imatrix else quant_type
            ggufs[name] = work / f"{name}.gguf"
            notes = quantize_gguf(f16, ggufs[name], quant_type, imatrix=imatrix if with_imatrix else None)
            model = GGUFCausalLM(ggufs[name], n_ctx=512)
            score(f"GGUF {name}", model, _mb(ggufs[name]), notes.get("fallback") or "", gguf=ggufs[name])
            model.close()
    for quant_type in ("F16", "Q4_K_M"):
        record = pack_file(ggufs[quant_type], work / f"{quant_type}.gguf.zst", args.level, 4 << 20, 110 * 1024, 64,
                           32 * 1024)
        rows.append({"format": f"GGUF {quant_type} + zstd-{args.level}", "mb": round(record.packed_size / 1e6, 1),
                     "ratio_to_bf16": round(record.packed_size / 1e6 / bf16_mb, 3),
                     "note": f"pack ratio {record.ratio:.3f}; same weights as GGUF {quant_type}"})
        _save(rows)
    hf = HFCausalLM(model_dir, hardware)
    score("HF fp32", hf, _mb(model_dir), "transformers")
    hf.close()
    bf16 = HFCausalLM(bf16_dir, HardwareSpec(name="cpu", dtype="bfloat16"))
    score("HF bf16", bf16, bf16_mb, "transformers")
    bf16.close()
    if not args.skip_llmcompressor:
        rows.extend(_pruned_packs(work, args.level, bf16_mb))
        _save(rows)
        _w4a16_rows(score, work, hardware, args.calibration_samples, args.threads)
    reference.close()
    _finish(args, rows, results, bf16_mb)


def _w4a16_rows(score, work: Path, hardware, samples: int, threads: int | None) -> None:
    """Round-to-nearest, GPTQ, AWQ and AWQ+GPTQ with one scheme (W4A16 asymmetric g32, MSE scales), one calibration text."""
    from cogumi.compress.gguf_export import decompress_to_dense
    from cogumi.models.fidelity import HFCausalLM

    for method, label in (("rtn", "RTN"), ("gptq", "GPTQ"), ("awq", "AWQ"), ("awq_gptq", "AWQ+GPTQ")):
        compressed, seconds = _quantized_model(method, work / f"{method}-outputs", samples, threads)
        dense = decompress_to_dense(compressed, work / f"{method}-dense")
        model = HFCausalLM(dense, hardware)
        score(f"{label} W4A16 asym g32", model, _mb(compressed),
              f"quantize stage {seconds:.0f} s; compressed-tensors on disk; scored dense; " + " ".join(W4A16))
        model.close()


def _finish(args, rows: list[dict], path: Path, bf16_mb: float) -> None:
    result = {"windows": args.windows, "tokens_per_window": 256, "bf16_mb": round(bf16_mb, 1),
              "calibration_samples": args.calibration_samples, "rows": rows,
              "command": "python benchmarks/compress_table.py " + " ".join(sys.argv[1:]),
              **({} if args.w4a16_only else {"llama_kld_chunks": args.kld_chunks, "imatrix_chunks": args.imatrix_chunks,
                                              "anchor": "llama.cpp Llama-3-8B Q4_K_M: 29 % of F16 size at KLD 0.031"})}
    write_result(result, path)


def _pruned_packs(work: Path, level: int, bf16_mb: float) -> list[dict]:
    """50 % Wanda-pruned model: GGUF sizes are unchanged, packed sizes are where the zeros show."""
    from cogumi.assets import converter_dir
    from cogumi.compress.gguf_export import convert_hf_to_gguf, quantize_gguf
    from cogumi.compress.zstd_pack import pack_file

    outputs = work / "prune-outputs"
    env = {**os.environ, "COGUMI_OUTPUTS": str(outputs)}
    subprocess.run([sys.executable, str(ROOT / "compress.py"), "stage=prune", "sparsity=0.5",
                    "stage.run.calibration_samples=8", "stage.run.fidelity_windows=0", "logger=none"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    pruned = next((outputs / "artifacts" / "prune").glob("*/model"))
    f16 = convert_hf_to_gguf(pruned, work / "pruned-F16.gguf", converter_dir())
    q4 = work / "pruned-Q4_K_M.gguf"
    quantize_gguf(f16, q4, "Q4_K_M")
    rows = []
    for name, path in (("F16", f16), ("Q4_K_M", q4)):
        record = pack_file(path, work / f"pruned-{name}.gguf.zst", level, 4 << 20, 110 * 1024, 64, 32 * 1024)
        rows.append({"format": f"pruned 50 % GGUF {name} + zstd-{level}", "mb": round(record.packed_size / 1e6, 1),
                     "ratio_to_bf16": round(record.packed_size / 1e6 / bf16_mb, 3),
                     "note": f"GGUF {record.source_size / 1e6:.1f} MB dense; pack ratio {record.ratio:.3f}"})
    return rows


if __name__ == "__main__":
    main()
