"""Head cost per served query: the stacked row vs the head's weight slices (router/heads.py `logits_parts`).

A router whose head reads [embedding | lexical] used to build that row per query (a sparse hstack of the dense
embedding and the TF-IDF row) before the product; it now multiplies each part by its own slice of the
first-layer weights. Both paths are timed on the same one-query inputs, interleaved query by query (so machine
load hits both alike), from the query's embedding to its probabilities (the lexical transform included in
both). Reports p50/p95 of each, the paired per-query difference, and the largest probability difference.
Queries: the dev hand-written files (never the held-out file).

    .venv/bin/python benchmarks/router_head_parts.py --router <router artifact folder> [--repeats 5]
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

from results_file import write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "router_head_parts.json"


def _summary(values: np.ndarray) -> dict:
    return {"p50_ms": round(float(np.percentile(values, 50)), 4), "p95_ms": round(float(np.percentile(values, 95)), 4),
            "mean_ms": round(float(values.mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", default="latest:router")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from cogumi.router import domain_data, load_router
    from cogumi.router.lexical import combine

    torch.set_num_threads(args.threads)
    router = load_router(args.router)
    if router.lexical is None:
        raise SystemExit(f"{router.folder}: an embedding-only head has one part; nothing to compare")
    texts = [q.text for path in domain_data.HANDWRITTEN_DEV for q in domain_data.handwritten_queries(path)]
    vectors = [router.encoder.encode([t]) for t in texts]
    head, lexical = router.head, router.lexical

    def stacked(v, text):
        return head.probabilities(combine(v, lexical, [text]))

    def parts(v, text):
        return head.probabilities_parts(v, lexical.transform([text]))

    diff = max(float(np.abs(stacked(v, t) - parts(v, t)).max()) for v, t in zip(vectors, texts))
    times = {"stacked": [], "parts": []}
    load_start = os.getloadavg()[0]
    for repeat in range(args.repeats):
        for i, (v, text) in enumerate(zip(vectors, texts)):
            order = ("stacked", "parts") if (i + repeat) % 2 == 0 else ("parts", "stacked")
            for name in order:
                fn = stacked if name == "stacked" else parts
                started = time.perf_counter()
                fn(v, text)
                times[name].append((time.perf_counter() - started) * 1000)
    a, b = np.array(times["stacked"]), np.array(times["parts"])
    result = {"router": str(router.folder), "queries": len(texts), "calls_each": len(a), "threads": args.threads,
              "load_avg_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
              "stacked": _summary(a), "parts": _summary(b),
              "paired_difference_ms": {"p50": round(float(np.percentile(b - a, 50)), 4),
                                       "mean": round(float((b - a).mean()), 4)},
              "max_probability_difference": diff}
    write_result(result, RESULTS)


if __name__ == "__main__":
    main()
