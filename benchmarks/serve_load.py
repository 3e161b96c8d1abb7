"""Load test on loopback: N concurrent clients × M generating requests each against `serve.py`,
mixed routes: the base, `auto` (the router, when there is one) and each modifier by name.

Each client has its own API key (as separate users would), so the per-key rate limit applies per
client; the server runs with its configured limits. Reports latency p50/p90/p99 overall and per
route/adapter (from each reply's `cogumi` record), throughput and errors by status. Goal from the
issue: zero errors other than deliberate 429/503, and none of those under the configured limits.
Modifiers: the promoted ones, else two test LoRAs (small PEFT adapters trained on the embedded model, tests/serve_helpers.py). `--overload` adds a short phase with a tiny queue to show that the
server sheds load with 503 + Retry-After instead of queueing without bound.
Prints JSON and writes benchmarks/results/serve_load.json.

    .venv/bin/python benchmarks/serve_load.py                          # 32 clients × 20 requests × 32 tokens
    .venv/bin/python benchmarks/serve_load.py --engine llama-server --overload
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test LoRA builder

from cogumi.artifacts import ArtifactStore  # noqa: E402
from cogumi.paths import outputs_dir  # noqa: E402
from cogumi.serve.launch import running_server  # noqa: E402
from cogumi.serve.modifier_catalog import promoted_modifiers  # noqa: E402

from results_file import write_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
QUESTIONS = ["Say hi.", "Write a Python function that adds two numbers.", "What is 12 times 7?",
             "Name a planet.", "Give one tip for sleeping well."]


async def client_loop(http, base: str, key: str, requests: int, max_tokens: int, models: list[str],
                      latencies: list, statuses: Counter, by_route: dict, offset: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    for i in range(requests):
        body = {"model": models[(offset + i) % len(models)], "temperature": 0, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": QUESTIONS[(offset + i) % len(QUESTIONS)]}]}
        started = time.perf_counter()
        try:
            response = await http.post(f"{base}/v1/chat/completions", json=body, headers=headers)
            statuses[response.status_code] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
                record = response.json()["cogumi"]
                by_route.setdefault(f"{record['route']}:{record['adapter'] or '-'}", []).append(latencies[-1])
        except Exception as err:  # a refused or dropped connection is an error the report must show
            statuses[type(err).__name__] += 1


def _percentiles(values: list[float]) -> dict:
    values = sorted(values)

    def pct(p):
        return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 1) if values else None

    return {"n": len(values), "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0),
            "mean": round(statistics.mean(values) * 1000, 1) if values else None}


async def load(base: str, keys: list[str], requests: int, max_tokens: int, models: list[str]) -> dict:
    import httpx

    latencies, statuses, by_route = [], Counter(), {}
    limits = httpx.Limits(max_connections=len(keys) + 5, max_keepalive_connections=len(keys) + 5)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http, base, key, requests, max_tokens, models, latencies, statuses,
                                           by_route, i) for i, key in enumerate(keys)))
        wall = time.perf_counter() - started
    return {"clients": len(keys), "requests_per_client": requests, "max_tokens": max_tokens, "models": models,
            "total": len(keys) * requests, "ok": statuses.get(200, 0),
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
            "errors_other_than_429_503": sum(v for k, v in statuses.items() if k not in (200, 429, 503)),
            "wall_s": round(wall, 1), "requests_per_s": round(len(keys) * requests / wall, 1),
            "latency_ms": _percentiles(latencies),
            "latency_ms_by_route": {route: _percentiles(values) for route, values in sorted(by_route.items())}}


def modifier_override() -> str:
    """The promoted modifiers when there are some, else two test LoRAs (built once, cached)."""
    if promoted_modifiers(ArtifactStore(outputs_dir() / "artifacts")):
        return "stage.run.modifiers=promoted"
    from serve_helpers import build_test_lora

    return f"stage.run.modifiers={{alpha:'{build_test_lora('alpha', 1)}',beta:'{build_test_lora('beta', 2)}'}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--engine", default="in-process", choices=("in-process", "llama-server"))
    parser.add_argument("--overload", action="store_true", help="also run a phase with queue_size=4")
    args = parser.parse_args()

    keys = [f"load-key-{i}" for i in range(args.clients)]
    env = {"COGUMI_API_KEYS": ",".join(keys)}
    server_args = ("stage.run.chat_page=false", "stage.run.request_log=null", f"stage.run.engine={args.engine}",
                   "stage.run.n_ctx=512", modifier_override())
    result = {"benchmark": "serve_load", "engine": args.engine}
    # The configured limits (conf/stage/serve.yaml): queue 64 >= 32 clients, 600 req/min per key.
    with running_server(*server_args, env=env) as (base, _):
        served = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {keys[0]}"}).json()["data"]
        models = ["auto", *(m["id"] for m in served)]
        result["configured_limits"] = asyncio.run(load(base, keys, args.requests, args.max_tokens, models))
        print(json.dumps(result["configured_limits"]), flush=True)
    if args.overload:
        with running_server(*server_args, "stage.run.limits.queue_size=4", env=env) as (base, _):
            result["overload_queue_4"] = asyncio.run(load(base, keys, max(1, args.requests // 10),
                                                          args.max_tokens, models))
    result["goal_zero_errors_under_limits"] = (
        result["configured_limits"]["ok"] == result["configured_limits"]["total"])
    # Other work on the machine moves absolute numbers a lot on 2 cores: record how busy it was.
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    write_result(result, RESULTS.with_name(f"serve_load_{args.engine}.json" if args.engine != "in-process" else RESULTS.name))


if __name__ == "__main__":
    main()
