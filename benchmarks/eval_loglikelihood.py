"""MC scoring speed and agreement: Cogumi's llama.cpp lm-eval model vs lm-eval's `hf` model (the baseline).

Both back ends score the same ARC-Easy, MMLU and HellaSwag loglikelihood requests (mining half) of
the embedded student, on the same weights: the HF folder in fp32 and its F16 GGUF export (llama.cpp's
converter). Reports items/s of each, the speed-up, how often both pick the same option (with a
Wilson interval), both accuracies and the |Δ loglikelihood|. Prints JSON and writes
benchmarks/results/eval_loglikelihood.json. Timings depend on the machine's load: both sides run in
the same process, set by set, alternating (gguf, hf) for `--repeats` rounds, and each side keeps its
fastest round: this machine's speed drifts by ~20 % over minutes, which a single gguf-then-hf pass
would read as a speed-up or a slow-down. On a busy machine the ratio of CPU seconds is the steadier one.

    .venv/bin/python benchmarks/eval_loglikelihood.py [--items 100] [--threads 2] [--repeats 2]
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


SETS = ("arc_easy", "mmlu", "hellaswag")


def requests(items: int) -> dict:
    """Per MC set: (lm-eval Instances with the prompts of Cogumi's task YAMLs, item groups)."""
    from lm_eval.api.instance import Instance

    from cogumi.evaluate import offline_data
    from cogumi.evaluate.tasks import task_utils

    def item(name: str, doc: dict) -> tuple[str, list[str], int]:
        if name == "arc_easy":
            return f"Question: {doc['question']}\nAnswer:", [f" {o}" for o in doc["options"]], doc["gold"]
        if name == "mmlu":
            return task_utils.mmlu_prompt(doc), [f" {letter}" for letter in "ABCD"], doc["answer"]
        return task_utils.hellaswag_prompt(doc), [f" {e}" for e in task_utils.hellaswag_choices(doc)], doc["gold"]

    per_set = {}
    for name in SETS:
        pairs, groups = [], []
        for doc in offline_data.load(name, "mine")["test"].to_list()[:items]:
            context, options, gold = item(name, doc)
            groups.append((len(pairs), len(options), gold))
            pairs.extend((context, o) for o in options)
        per_set[name] = ([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)], groups)
    return per_set


def timed(lm, reqs) -> tuple[list[float], float, float]:
    """(scores, wall seconds, CPU seconds of this process: less sensitive to other processes' load)."""
    started, cpu = time.time(), time.process_time()
    scores = [s for s, _ in lm.loglikelihood(reqs, disable_tqdm=True)]
    return scores, time.time() - started, time.process_time() - cpu


def gguf_export(folder: Path, scratch: Path, gguf_type: str) -> Path:
    from cogumi.assets import converter_dir
    from cogumi.compress.gguf_export import convert_hf_to_gguf

    return convert_hf_to_gguf(folder, scratch / f"{gguf_type}.gguf", converter_dir(), gguf_type)


def run_sets(models: list, per_set: dict, repeats: int) -> list[dict]:
    """Per model, per set: (scores of the first round, fastest wall s, CPU s of that round, every
    round's wall s); the models take turns on each set, `repeats` rounds."""
    timings: list[dict] = [{} for _ in models]
    for name, (reqs, _) in per_set.items():
        for _ in range(repeats):
            for lm, timing in zip(models, timings):
                timing.setdefault(name, []).append(timed(lm, reqs))
    runs = []
    for timing in timings:
        runs.append({})
        for name, rounds in timing.items():
            _, wall, cpu = min(rounds, key=lambda r: r[1])
            runs[-1][name] = (rounds[0][0], wall, cpu, [round(r[1], 2) for r in rounds])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100, help="items per set (3 sets)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--hf-batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds per set; each side's fastest counts")
    parser.add_argument("--gguf-type", default="BF16", choices=["F16", "BF16", "F32"],
                        help="the GGUF export of the same HF weights (BF16: ~1.5x F16's prompt speed on AVX512-BF16 CPUs)")
    args = parser.parse_args()
    import torch
    from lm_eval.models.huggingface import HFLM

    from cogumi.assets import embedded_model_dir
    from cogumi.evaluate.llama_lm import LlamaCppLM
    from cogumi.stats import proportion

    torch.set_num_threads(args.threads)
    per_set = requests(args.items)
    folder = embedded_model_dir()
    with tempfile.TemporaryDirectory() as scratch:
        gguf = LlamaCppLM(str(gguf_export(folder, Path(scratch), args.gguf_type)), n_ctx=2048, n_threads=args.threads)
        hf = HFLM(pretrained=str(folder), dtype="float32", device="cpu", batch_size=args.hf_batch_size)
        gguf_runs, hf_runs = run_sets([gguf, hf], per_set, args.repeats)

    def picks(scores, groups):
        return [max(range(n), key=lambda j: scores[start + j]) for start, n, _ in groups]

    sets, all_same, all_g, all_h, diffs = {}, [], [], [], []
    for name, (reqs, groups) in per_set.items():
        (g_scores, g_s, g_cpu, g_rounds), (h_scores, h_s, h_cpu, h_rounds) = gguf_runs[name], hf_runs[name]
        g_pick, h_pick = picks(g_scores, groups), picks(h_scores, groups)
        golds = [gold for *_, gold in groups]
        all_same += [a == b for a, b in zip(g_pick, h_pick)]
        all_g += [p == gold for p, gold in zip(g_pick, golds)]
        all_h += [p == gold for p, gold in zip(h_pick, golds)]
        diffs += [abs(a - b) for a, b in zip(g_scores, h_scores)]
        sets[name] = {"items": len(groups), "requests": len(reqs), "hf_items_per_s": round(len(groups) / h_s, 2),
                      "gguf_items_per_s": round(len(groups) / g_s, 2), "speedup_vs_hf": round(h_s / g_s, 2),
                      "speedup_vs_hf_cpu_time": round(h_cpu / g_cpu, 2),
                      "round_wall_s": {"gguf": g_rounds, "hf": h_rounds}}
    items = len(all_same)
    hf_s, gguf_s = (sum(runs[n][1] for n in per_set) for runs in (hf_runs, gguf_runs))
    hf_cpu, gguf_cpu = (sum(runs[n][2] for n in per_set) for runs in (hf_runs, gguf_runs))
    same = proportion(sum(all_same), items)
    result = {
        "sets": list(per_set), "part": "mine", "weights": f"HF fp32 vs its {args.gguf_type} GGUF export",
        "gguf_type": args.gguf_type, "items": items, "threads": args.threads, "repeats": args.repeats, "per_set": sets,
        "hf_items_per_s": round(items / hf_s, 2), "gguf_items_per_s": round(items / gguf_s, 2),
        "hf_wall_s": round(hf_s, 1), "gguf_wall_s": round(gguf_s, 1),
        "speedup_vs_hf": round(hf_s / gguf_s, 2),
        "hf_cpu_s": round(hf_cpu, 1), "gguf_cpu_s": round(gguf_cpu, 1),
        "speedup_vs_hf_cpu_time": round(hf_cpu / gguf_cpu, 2),
        "same_choice": same.to_dict(),
        "max_abs_diff": round(max(diffs), 4), "mean_abs_diff": round(sum(diffs) / len(diffs), 4),
        "hf_accuracy": proportion(sum(all_h), items).to_dict(), "gguf_accuracy": proportion(sum(all_g), items).to_dict(),
        "goals": {"speedup_vs_hf >= 3": hf_s / gguf_s >= 3, "same_choice >= 0.98": same.value >= 0.98},
        "cpu_count": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
