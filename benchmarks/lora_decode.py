"""Decode speed of a LoRA modifier applied by llama.cpp at run time, by target set, threads and model width.

One run, same machine, same base: a base F16 GGUF alone (the baseline), the same GGUF with a GGUF
LoRA applied at run time (`Llama(lora_path=...)`, as the server applies modifiers) for each target
set, and the model with the all-linear LoRA merged in. Goal: run-time LoRA costs <= 15 % of base
decode speed. Every engine is measured interleaved, `--repeats` times, and the median kept, so
machine load hits them alike; costs compare engines of the same thread count only.

`--shape smollm2-135m` is the embedded model (real weights). The other shapes are randomly
initialised Llamas with SmolLM2-360M / 1.7B sizes (same vocabulary and tied embeddings), made with
transformers' LlamaConfig and exported with the project's own GGUF export: speed only, their
outputs mean nothing. llama.cpp adds 4 ops per adapted matmul (A·x, B·(A·x), scale, add), so at a
small width the cost is per-op overhead, and it should shrink as the matmuls it rides on grow.

    .venv/bin/python benchmarks/lora_decode.py                       # 135M, all 7 linear kinds, r16, 2 threads
    .venv/bin/python benchmarks/lora_decode.py --targets all qkvo qv mlp --threads 1 2 --size-ranks
    .venv/bin/python benchmarks/lora_decode.py --shape smollm2-1.7b --targets all qv --tokens 32 --repeats 3 \
        --no-merged --size-ranks
    .venv/bin/python benchmarks/lora_decode.py --shape smollm2-1.7b --base-type Q4_K_M ...   # the served base type
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from cogumi.assets import converter_dir, embedded_model_dir  # noqa: E402
from cogumi.compress.gguf_export import convert_hf_to_gguf, quantize_gguf  # noqa: E402
from cogumi.modifiers.gguf_lora import convert_lora, size_mb  # noqa: E402

from results_file import write_result  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET_SETS = {"all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
               "qkvo": ["q_proj", "k_proj", "v_proj", "o_proj"], "qv": ["q_proj", "v_proj"],
               "mlp": ["gate_proj", "up_proj", "down_proj"]}
# SmolLM2 sizes (config.json of HuggingFaceTB/SmolLM2-360M and -1.7B); the rest is the embedded model's config.
SHAPES = {"smollm2-135m": None,
          "smollm2-360m": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
                           "num_attention_heads": 15, "num_key_value_heads": 5, "head_dim": 64},
          "smollm2-1.7b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
                           "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 64}}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
PROMPT = "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n<|im_start|>assistant\n"


def _copy_tokenizer(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            (target / name).write_bytes((source / name).read_bytes())


def random_base(shape: dict, out_dir: Path, seed: int = 0) -> Path:
    """A randomly initialised Llama of `shape` (BF16 safetensors + the embedded tokenizer): speed only."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = json.loads((embedded_model_dir() / "config.json").read_text())
    config.update(shape)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**config), dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    _copy_tokenizer(embedded_model_dir(), out_dir)
    return out_dir


def random_adapter(model_dir: Path, rank: int, targets: list[str], out_dir: Path, seed: int = 0):
    """A PEFT LoRA of `rank` on `targets` with small random B (a trained adapter's shape and size)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.01)
    peft_model.save_pretrained(out_dir)
    return peft_model


def decode_tok_s(llm, tokens: int) -> float:
    """Generated tokens per second for exactly `tokens` greedy tokens (end-of-text suppressed)."""
    llm.reset()
    started = time.perf_counter()
    out = llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, logit_bias={llm.token_eos(): -1e9})
    elapsed = time.perf_counter() - started
    return out["usage"]["completion_tokens"] / elapsed


def _as_type(f16_gguf: Path, quant_type: str) -> Path:
    """The F16 export itself, or its llama.cpp quantization (as served: a Q4_K_M base under an f16 LoRA)."""
    if quant_type == "F16":
        return f16_gguf
    target = f16_gguf.with_name(f16_gguf.name.replace("F16", quant_type))
    quantize_gguf(f16_gguf, target, quant_type)
    f16_gguf.unlink()  # a 1.7B F16 export is 3.4 GB
    return target


def build_ggufs(model_dir: Path, scratch: Path, args) -> tuple[Path, dict, Path | None, dict]:
    """(base GGUF, {target set: GGUF LoRA}, merged GGUF or None, {target set: adapter MB})."""
    base_gguf = _as_type(convert_hf_to_gguf(model_dir, scratch / "base-F16.gguf", converter_dir(), "F16"), args.base_type)
    loras, sizes, merged_gguf = {}, {}, None
    for name in args.targets:
        folder = scratch / f"adapter-{name}"
        peft_model = random_adapter(model_dir, args.rank, TARGET_SETS[name], folder)
        loras[name] = convert_lora(folder, model_dir, scratch / f"adapter-{name}.gguf", converter_dir(), "f16")
        sizes[name] = size_mb(loras[name])
        if name == args.targets[0] and not args.no_merged:
            merged_dir = scratch / "merged"
            peft_model.merge_and_unload().save_pretrained(merged_dir)
            _copy_tokenizer(model_dir, merged_dir)
            merged_gguf = _as_type(convert_hf_to_gguf(merged_dir, scratch / "merged-F16.gguf", converter_dir(), "F16"),
                                   args.base_type)
        del peft_model
    return base_gguf, loras, merged_gguf, sizes


def measure(base_gguf: Path, loras: dict, merged_gguf: Path | None, args) -> dict:
    from llama_cpp import Llama

    engines = {}
    for threads in args.threads:
        def engine(path, lora=None):
            return Llama(model_path=str(path), lora_path=str(lora) if lora else None, n_ctx=512, n_threads=threads,
                         n_threads_batch=threads, verbose=False)
        engines[f"t{threads}/base"] = engine(base_gguf)
        for name, lora in loras.items():
            engines[f"t{threads}/lora-{name}"] = engine(base_gguf, lora)
        if merged_gguf is not None:
            engines[f"t{threads}/merged-{args.targets[0]}"] = engine(merged_gguf)
    for llm in engines.values():
        decode_tok_s(llm, 8)  # warm-up
    runs = {name: [] for name in engines}
    for _ in range(args.repeats):  # interleaved: load changes hit every row alike
        for name, llm in engines.items():
            runs[name].append(decode_tok_s(llm, args.tokens))
    for llm in engines.values():
        llm.close()
    speed = {name: round(statistics.median(v), 2) for name, v in runs.items()}
    costs = {name: round(1 - tok_s / speed[name.split("/")[0] + "/base"], 4)
             for name, tok_s in speed.items() if not name.endswith("/base")}
    return {"decode_tok_s": speed, "decode_tok_s_runs": {n: [round(x, 2) for x in v] for n, v in runs.items()},
            "cost_vs_base": costs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="smollm2-135m")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGET_SETS), default=["all"],
                        help="target sets, each its own run-time LoRA; the first one is also merged")
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--size-ranks", type=int, nargs="*", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--base-type", default="F16", help="llama.cpp type of the base and merged GGUFs (e.g. Q4_K_M, "
                        "the served type); the LoRA stays f16")
    parser.add_argument("--no-merged", action="store_true", help="skip the merged model (it decodes at base speed)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/lora_decode[-<shape>].json")
    args = parser.parse_args()

    default = ("lora_decode" + ("" if args.shape == "smollm2-135m" else f"-{args.shape}")
               + ("" if args.base_type == "F16" else f"-{args.base_type}") + ".json")
    out = args.out or RESULTS / default
    # Decode speeds are only comparable within one run; the load says how busy the machine was.
    result = {"shape": args.shape, "weights": "embedded (real)" if SHAPES[args.shape] is None else
              "random (speed only)", "rank": args.rank, "targets": {t: TARGET_SETS[t] for t in args.targets},
              "tokens": args.tokens, "repeats": args.repeats, "threads": args.threads, "base_type": args.base_type,
              "lora_type": "f16", "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="lora-bench-", dir=os.environ.get("COGUMI_BENCH_TMP")) as scratch:
        scratch = Path(scratch)
        model_dir = embedded_model_dir() if SHAPES[args.shape] is None else \
            random_base(SHAPES[args.shape], scratch / "random-base")
        result["model"] = str(model_dir) if SHAPES[args.shape] is None else {"llama_config": SHAPES[args.shape]}
        base_gguf, loras, merged_gguf, lora_mb = build_ggufs(model_dir, scratch, args)
        result.update(measure(base_gguf, loras, merged_gguf, args))
        result["goal_runtime_lora_cost_max"] = 0.15
        result["goal_met_by"] = sorted(n for n, c in result["cost_vs_base"].items() if "lora-" in n and c <= 0.15)
        result["lora_f16_mb_by_target_set"] = lora_mb
        result["base_gguf_f16_mb"] = size_mb(base_gguf)
        sizes = []
        for rank in args.size_ranks:
            folder = scratch / f"size-r{rank}"
            random_adapter(model_dir, rank, TARGET_SETS["all"], folder)
            gguf = convert_lora(folder, model_dir, scratch / f"size-r{rank}.gguf", converter_dir(), "f16")
            sizes.append({"rank": rank, "peft_mb": size_mb(folder / "adapter_model.safetensors"),
                          "gguf_f16_mb": size_mb(gguf)})
        if sizes:
            result["adapter_mb_by_rank"] = sizes
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    write_result(result, out)


if __name__ == "__main__":
    main()
