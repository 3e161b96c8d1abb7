"""Router decision latency (goal: p95 <= 5 ms on 2 cores, generation excluded).

Times `Router.decide` (MiniLM encode of one query + head + policy) over the hand-written queries,
repeated; the baseline measured in the same run is the MiniLM encode alone, so the difference is
what the head and the policy add. Also times `EscalationDetector.score` when an artifact exists.

    .venv/bin/python benchmarks/router_latency.py [--router latest:router] [--repeats 20] [--threads 2]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "router_latency.json"


def _timings_ms(fn, texts: list[str], repeats: int) -> dict:
    for text in texts[:5]:
        fn(text)  # warm-up: first calls allocate
    samples = []
    for _ in range(repeats):
        for text in texts:
            started = time.perf_counter()
            fn(text)
            samples.append((time.perf_counter() - started) * 1000)
    values = np.array(samples)
    return {"calls": len(values), "p50_ms": round(float(np.percentile(values, 50)), 3),
            "p95_ms": round(float(np.percentile(values, 95)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3),
            "mean_ms": round(float(values.mean()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", default="latest:router")
    parser.add_argument("--escalation", default="latest:escalation")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from cogumi.errors import CogumiError
    from cogumi.router import load_escalation, load_router
    from cogumi.router.domain_data import handwritten_queries

    router = load_router(args.router)
    texts = [q.text for q in handwritten_queries()]
    result = {
        "threads": args.threads, "queries": len(texts), "router": str(router.folder),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "baseline_encode_only": _timings_ms(lambda t: router.encoder.encode([t]), texts, args.repeats),
        "decide": _timings_ms(lambda t: router.decide(t, confidence=0.3, modifiers={"code"}), texts, args.repeats),
    }
    try:
        detector = load_escalation(args.escalation)
        result["escalation_score"] = _timings_ms(detector.score, texts, args.repeats)
    except CogumiError as err:
        result["escalation_score"] = {"skipped": str(err)}
    result["goal_p95_ms"] = 5.0
    result["meets_goal"] = result["decide"]["p95_ms"] <= 5.0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
