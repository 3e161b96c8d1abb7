"""MC scoring speed and agreement: Cogumi's llama.cpp lm-eval model vs lm-eval's `hf` model (the baseline).

Both back ends score the same ARC-Easy, MMLU and HellaSwag loglikelihood requests (mining half) of
the embedded student, on the same weights: the HF folder in fp32 and its F16 GGUF export (llama.cpp's
converter). Reports items/s of each, the speed-up, how often both pick the same option (with a
Wilson interval), both accuracies and the |Δ loglikelihood|. Prints JSON and writes
benchmarks/results/eval_loglikelihood.json. Timings depend on the machine's load: both sides run in
the same process one after the other, so the ratio is what to read; on a busy machine the ratio of
CPU seconds (also reported) is the steadier one.

    .venv/bin/python benchmarks/eval_loglikelihood.py [--items 100] [--threads 2]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results" / "eval_loglikelihood.json"


def requests(items: int):
    """lm-eval Instances of the three MC sets with the prompts of Cogumi's task YAMLs; item groups."""
    from lm_eval.api.instance import Instance

    from cogumi.evaluate import offline_data
    from cogumi.evaluate.tasks import task_utils

    pairs, groups = [], []

    def add(context: str, options: list[str], gold: int) -> None:
        groups.append((len(pairs), len(options), gold))
        pairs.extend((context, o) for o in options)

    for doc in offline_data.load("arc_easy", "mine")["test"].to_list()[:items]:
        add(f"Question: {doc['question']}\nAnswer:", [f" {o}" for o in doc["options"]], doc["gold"])
    for doc in offline_data.load("mmlu", "mine")["test"].to_list()[:items]:
        add(task_utils.mmlu_prompt(doc), [f" {letter}" for letter in "ABCD"], doc["answer"])
    for doc in offline_data.load("hellaswag", "mine")["test"].to_list()[:items]:
        add(task_utils.hellaswag_prompt(doc), [f" {e}" for e in task_utils.hellaswag_choices(doc)], doc["gold"])
    return [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)], groups


def timed(lm, reqs) -> tuple[list[float], float, float]:
    """(scores, wall seconds, CPU seconds of this process: less sensitive to other processes' load)."""
    started, cpu = time.time(), time.process_time()
    scores = [s for s, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
    return scores, time.time() - started, time.process_time() - cpu


def f16_export(folder: Path, scratch: Path) -> Path:
    from cogumi.assets import converter_dir
    from cogumi.compress.gguf_export import convert_hf_to_gguf

    return convert_hf_to_gguf(folder, scratch / "F16.gguf", converter_dir(), "F16")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100, help="items per set (3 sets)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--hf-batch-size", type=int, default=8)
    args = parser.parse_args()
    import torch
    from lm_eval.models.huggingface import HFLM

    from cogumi.assets import embedded_model_dir
    from cogumi.evaluate.llama_lm import LlamaCppLM
    from cogumi.stats import proportion

    torch.set_num_threads(args.threads)
    reqs, groups = requests(args.items)
    folder = embedded_model_dir()
    with tempfile.TemporaryDirectory() as scratch:
        gguf = LlamaCppLM(str(f16_export(folder, Path(scratch))), n_ctx=2048, n_threads=args.threads)
        gguf_scores, gguf_s, gguf_cpu = timed(gguf, reqs)
        del gguf
    hf = HFLM(pretrained=str(folder), dtype="float32", device="cpu", batch_size=args.hf_batch_size)
    hf_scores, hf_s, hf_cpu = timed(hf, reqs)
    diffs = [abs(a - b) for a, b in zip(gguf_scores, hf_scores)]

    def picks(scores):
        return [max(range(n), key=lambda j: scores[start + j]) for start, n, _ in groups]

    g_pick, h_pick = picks(gguf_scores), picks(hf_scores)
    same = proportion(sum(a == b for a, b in zip(g_pick, h_pick)), len(groups))
    hf_acc = proportion(sum(p == gold for p, (_, _, gold) in zip(h_pick, groups)), len(groups))
    gguf_acc = proportion(sum(p == gold for p, (_, _, gold) in zip(g_pick, groups)), len(groups))
    result = {
        "sets": ["arc_easy", "mmlu", "hellaswag"], "part": "mine", "weights": "HF fp32 vs its F16 GGUF export",
        "requests": len(reqs), "items": len(groups), "threads": args.threads,
        "hf_items_per_s": round(len(groups) / hf_s, 2), "gguf_items_per_s": round(len(groups) / gguf_s, 2),
        "hf_wall_s": round(hf_s, 1), "gguf_wall_s": round(gguf_s, 1),
        "speedup_vs_hf": round(hf_s / gguf_s, 2),
        "hf_cpu_s": round(hf_cpu, 1), "gguf_cpu_s": round(gguf_cpu, 1),
        "speedup_vs_hf_cpu_time": round(hf_cpu / gguf_cpu, 2),
        "same_choice": same.to_dict(),
        "max_abs_diff": round(max(diffs), 4), "mean_abs_diff": round(sum(diffs) / len(diffs), 4),
        "hf_accuracy": hf_acc.to_dict(), "gguf_accuracy": gguf_acc.to_dict(),
        "goals": {"speedup_vs_hf >= 3": hf_s / gguf_s >= 3, "same_choice >= 0.98": same.value >= 0.98},
        "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
