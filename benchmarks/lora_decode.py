"""Decode speed of a LoRA modifier applied by llama.cpp at run time, and adapter size vs rank.

One run, same machine, same base: the embedded model's F16 GGUF alone (the baseline), the same GGUF
with a GGUF LoRA applied at run time (`Llama(lora_path=...)`, as the server applies modifiers), and
the model with that LoRA merged in (F16 GGUF). Goal: run-time LoRA costs <= 15 % of base decode speed.
The three are measured interleaved, `--repeats` times each, and the median kept, so machine load
hits them alike. Sizes: PEFT safetensors and GGUF LoRA (F16) MB for a range of ranks (all linear
layers but lm_head, which SmolLM2 ties to its embeddings).

    .venv/bin/python benchmarks/lora_decode.py                       # rank 16 for speed, ranks 4..128 for size
    .venv/bin/python benchmarks/lora_decode.py --rank 8 --tokens 128 --repeats 5
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
from cogumi.compress.gguf_export import convert_hf_to_gguf  # noqa: E402
from cogumi.modifiers.gguf_lora import convert_lora, size_mb  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "lora_decode.json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT = "<|im_start|>user\nWrite a short story about a robot who learns to paint.<|im_end|>\n<|im_start|>assistant\n"


def random_adapter(model_dir: Path, rank: int, out_dir: Path, seed: int = 0):
    """A PEFT LoRA of `rank` with small random B (a trained adapter's shape and size), and the merged model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=TARGETS))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--size-ranks", type=int, nargs="*", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from llama_cpp import Llama

    model_dir = embedded_model_dir()
    # Decode speeds are only comparable within one run; the load says how busy the machine was.
    result = {"model": str(model_dir), "rank": args.rank, "tokens": args.tokens, "repeats": args.repeats,
              "threads": args.threads, "load_average_1m_at_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="lora-bench-") as scratch:
        scratch = Path(scratch)
        base_gguf = convert_hf_to_gguf(model_dir, scratch / "base-F16.gguf", converter_dir(), "F16")
        peft_model = random_adapter(model_dir, args.rank, scratch / "adapter")
        lora = convert_lora(scratch / "adapter", model_dir, scratch / "adapter.gguf", converter_dir(), "f16")
        merged_dir = scratch / "merged"
        peft_model.merge_and_unload().save_pretrained(merged_dir)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (model_dir / name).is_file():
                (merged_dir / name).write_bytes((model_dir / name).read_bytes())
        merged_gguf = convert_hf_to_gguf(merged_dir, scratch / "merged-F16.gguf", converter_dir(), "F16")
        del peft_model

        engines = {"base": Llama(model_path=str(base_gguf), n_ctx=512, n_threads=args.threads, verbose=False),
                   "base+runtime_lora": Llama(model_path=str(base_gguf), lora_path=str(lora), n_ctx=512,
                                              n_threads=args.threads, verbose=False),
                   "merged": Llama(model_path=str(merged_gguf), n_ctx=512, n_threads=args.threads, verbose=False)}
        for llm in engines.values():
            decode_tok_s(llm, 8)  # warm-up
        runs = {name: [] for name in engines}
        for _ in range(args.repeats):  # interleaved: load changes hit every row alike
            for name, llm in engines.items():
                runs[name].append(decode_tok_s(llm, args.tokens))
        for llm in engines.values():
            llm.close()
        speed = {name: round(statistics.median(v), 1) for name, v in runs.items()}
        result["decode_tok_s"] = speed
        result["decode_tok_s_runs"] = {n: [round(x, 1) for x in v] for n, v in runs.items()}
        result["runtime_lora_cost"] = round(1 - speed["base+runtime_lora"] / speed["base"], 4)
        result["merged_cost"] = round(1 - speed["merged"] / speed["base"], 4)
        result["goal_runtime_lora_cost_max"] = 0.15
        result["goal_met"] = result["runtime_lora_cost"] <= 0.15

        sizes = []
        for rank in args.size_ranks:
            folder = scratch / f"adapter-r{rank}"
            random_adapter(model_dir, rank, folder)
            gguf = convert_lora(folder, model_dir, scratch / f"adapter-r{rank}.gguf", converter_dir(), "f16")
            sizes.append({"rank": rank, "peft_mb": size_mb(folder / "adapter_model.safetensors"),
                          "gguf_f16_mb": size_mb(gguf)})
        result["adapter_mb_by_rank"] = sizes
        result["base_gguf_f16_mb"] = size_mb(base_gguf)
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
