"""MC scoring speed and agreement: Cogumi's GGUF lm-eval model vs lm-eval's `hf` model (the baseline).

Scores the same ARC-Easy + MMLU loglikelihood requests (mining half) with both back ends on the
embedded student: requests/s, the largest and mean |Δ loglikelihood|, and how often both pick the
same option. Prints JSON and writes benchmarks/results/eval_loglikelihood.json.

    .venv/bin/python benchmarks/eval_loglikelihood.py [--items 20]
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

RESULTS = Path(__file__).parent / "results" / "eval_loglikelihood.json"


def requests(items: int):
    from lm_eval.api.instance import Instance

    from cogumi.evaluate import offline_data
    from cogumi.evaluate.tasks import task_utils

    pairs, groups = [], []
    for doc in offline_data.load("arc_easy", "mine")["test"].to_list()[:items]:
        groups.append((len(pairs), len(doc["options"]), doc["gold"]))
        pairs += [(f"Question: {doc['question']}\nAnswer:", f" {o}") for o in doc["options"]]
    for doc in offline_data.load("mmlu", "mine")["test"].to_list()[:items]:
        groups.append((len(pairs), 4, doc["answer"]))
        pairs += [(task_utils.mmlu_prompt(doc), f" {letter}") for letter in "ABCD"]
    return [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)], groups


def timed(lm, reqs) -> tuple[list[float], float]:
    started = time.time()
    scores = [s for s, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
    return scores, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20, help="items per set")
    args = parser.parse_args()
    from lm_eval.models.huggingface import HFLM

    from cogumi.assets import embedded_model_dir
    from cogumi.evaluate.llama_lm import LlamaCppLM

    reqs, groups = requests(args.items)
    folder = embedded_model_dir()
    gguf_scores, gguf_s = timed(LlamaCppLM(str(folder / "source.gguf"), n_ctx=2048), reqs)
    hf_scores, hf_s = timed(HFLM(pretrained=str(folder), dtype="float32", device="cpu", batch_size=8), reqs)
    diffs = [abs(a - b) for a, b in zip(gguf_scores, hf_scores)]

    def picks(scores):
        return [max(range(n), key=lambda j: scores[start + j]) for start, n, _ in groups]

    g_pick, h_pick = picks(gguf_scores), picks(hf_scores)
    result = {
        "requests": len(reqs), "items": len(groups),
        "hf_requests_per_s": round(len(reqs) / hf_s, 2), "gguf_requests_per_s": round(len(reqs) / gguf_s, 2),
        "speedup_vs_hf": round(hf_s / gguf_s, 2),
        "max_abs_diff": round(max(diffs), 4), "mean_abs_diff": round(sum(diffs) / len(diffs), 4),
        "same_choice": round(sum(a == b for a, b in zip(g_pick, h_pick)) / len(groups), 4),
        "hf_accuracy": round(sum(p == gold for p, (_, _, gold) in zip(h_pick, groups)) / len(groups), 4),
        "gguf_accuracy": round(sum(p == gold for p, (_, _, gold) in zip(g_pick, groups)) / len(groups), 4),
        "cpu_count": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
