"""LoRA hot-swap cost and router decision time, in one run (goals: swap p95 <= 50 ms, decision p95 <= 5 ms).

Swap, on the in-process engine with the promoted modifiers (or, without any, the test LoRAs of
tests/serve_helpers.py: small PEFT adapters trained on the embedded model):
- `apply_ms`: llama_set_adapters_lora (what the `swap_ms` of a routing record shows);
- `first_token_extra_ms`: what a switch adds to the first token — a request right after a switch vs
  the same request on the same adapter with the KV cache dropped too (paired, interleaved), because
  llama.cpp rebuilds its graph at the next decode, not in the set call;
- `lazy_load_ms`: llama_adapter_lora_init from the file (an LRU miss), with one resident adapter.
Router: `router.decide(text, mode=...)` (domain classifier + policy) on held-out style queries, with
`latest:router` from the outputs store; skipped (null) when there is none.
Prints JSON and writes benchmarks/results/serve_swap.json.

    .venv/bin/python benchmarks/serve_swap.py [--rounds 30]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # the test LoRA builder, when nothing is promoted

from cogumi.artifacts import ArtifactStore  # noqa: E402
from cogumi.assets import embedded_model_dir  # noqa: E402
from cogumi.errors import ArtifactError  # noqa: E402
from cogumi.paths import outputs_dir  # noqa: E402
from cogumi.serve.modifier_catalog import promoted_modifiers  # noqa: E402
from cogumi.serve.runtime import GenerationParams  # noqa: E402

from results_file import write_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_swap.json"
QUERIES = ["Write a Python function that merges two sorted lists.", "What is 17 times 23?",
           "If all cats are mammals and Tom is a cat, is Tom a mammal?", "Summarise the water cycle.",
           "Call the weather API for Paris tomorrow.", "Fix this SQL: SELEC * FROM users", "Hello!",
           "Translate 'good morning' into French.", "Solve for x: 3x + 5 = 20.", "Tell me a joke about owls."]


def pct(values: list[float], p: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(p * len(values)))], 3) if values else None


def stats(values: list[float]) -> dict:
    return {"n": len(values), "p50": pct(values, 0.5), "p95": pct(values, 0.95), "max": pct(values, 1.0),
            "mean": round(statistics.mean(values), 3) if values else None}


def modifier_files(store: ArtifactStore) -> tuple[dict, str]:
    promoted = promoted_modifiers(store)
    if len(promoted) >= 2:
        return {m.domain: m.path for m in promoted}, "promoted"
    from serve_helpers import build_test_lora

    return {"alpha": build_test_lora("alpha", seed=1), "beta": build_test_lora("beta", seed=2)}, "test LoRAs"


def measure_swaps(files: dict, rounds: int, threads: int) -> dict:
    from cogumi.serve.engine_local import LlamaEngine
    from cogumi.serve.lora_slots import LoraSlots

    engine = LlamaEngine(embedded_model_dir() / "source.gguf", "smollm2-135m", n_ctx=512, n_threads=threads,
                         modifiers=files)
    question = [{"role": "user", "content": "Give one tip for writing clear code."}]
    one_token = GenerationParams(max_tokens=1, temperature=0.0)
    names = list(files)
    apply_ms, switched, same = [], [], []
    engine.generate(question, one_token, adapter=names[0])
    for i in range(rounds):
        target = names[(i + 1) % len(names)] if i % 3 else None  # base in the rotation too
        reply = engine.generate(question, one_token, adapter=target)
        apply_ms.append(reply.timings["swap_ms"])
        switched.append(reply.timings["ttft_ms"])
        with engine._lock:
            engine.llm.reset()  # same adapter, cache dropped: all that differs from the switch is the switch
        same.append(engine.generate(question, one_token, adapter=target).timings["ttft_ms"])
    lazy = LoraSlots(engine.llm.model, engine.llm.ctx, files, max_resident=1, preload=False)
    lazy_ms = []
    for i in range(max(4, rounds // 3)):
        started = time.perf_counter()
        lazy._load(names[i % len(names)])
        lazy_ms.append((time.perf_counter() - started) * 1000)
    lazy.close()
    engine.close()
    extra = [a - b for a, b in zip(switched, same)]
    return {"adapters": len(files), "apply_ms": stats(apply_ms), "ttft_after_switch_ms": stats(switched),
            "ttft_same_adapter_ms": stats(same), "first_token_extra_ms": stats(extra),
            "swap_total_p95_ms": round(pct(apply_ms, 0.95) + max(0.0, pct(extra, 0.95)), 3),
            "lazy_load_ms": stats(lazy_ms)}


def measure_router(store: ArtifactStore, rounds: int) -> dict:
    try:
        artifact = store.resolve("latest:router")
    except ArtifactError as err:
        return {"skipped": str(err)}
    from cogumi.router import load_router

    router = load_router(str(artifact.path))
    router.decide(QUERIES[0], mode="speed")  # the encoder's first call builds its caches
    timings = {}
    for mode in ("speed", "quality"):
        values = []
        for i in range(rounds * len(QUERIES) // 3):
            started = time.perf_counter()
            router.decide(QUERIES[i % len(QUERIES)], mode=mode, modifiers={"code", "math"})
            values.append((time.perf_counter() - started) * 1000)
        timings[mode] = stats(values)
    return {"artifact": artifact.ref, "decide_ms": timings,
            "goal_decision_p95_le_5ms": all(t["p95"] <= 5 for t in timings.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    store = ArtifactStore(outputs_dir() / "artifacts")
    files, source = modifier_files(store)
    result = {"benchmark": "serve_swap", "modifiers": source, "threads": args.threads,
              "swap": measure_swaps(files, args.rounds, args.threads), "router": measure_router(store, args.rounds)}
    result["goal_swap_p95_le_50ms"] = result["swap"]["swap_total_p95_ms"] <= 50
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    write_result(result, RESULTS)


if __name__ == "__main__":
    main()
