"""Load test on loopback: N concurrent clients × M requests each against `serve.py`.

Each client has its own API key (as separate users would), so the per-key rate limit applies per
client; the server runs with its configured limits. Reports latency p50/p90/p99, throughput and
errors by status. Goal from the issue: zero errors other than deliberate 429/503, and none of those
under the configured limits. `--overload` adds a short phase with a tiny queue to show that the
server sheds load with 503 + Retry-After instead of queueing without bound.
Prints JSON and writes benchmarks/results/serve_load.json.

    .venv/bin/python benchmarks/serve_load.py                          # 50 clients × 200 requests
    .venv/bin/python benchmarks/serve_load.py --clients 50 --requests 20 --overload
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cogumi.serve.launch import running_server  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_load.json"
BODY = {"model": "base", "messages": [{"role": "user", "content": "Say hi."}], "temperature": 0}


async def client_loop(http, base: str, key: str, requests: int, max_tokens: int, latencies: list,
                      statuses: Counter) -> None:
    body = {**BODY, "max_tokens": max_tokens}
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(requests):
        started = time.perf_counter()
        try:
            response = await http.post(f"{base}/v1/chat/completions", json=body, headers=headers)
            statuses[response.status_code] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
        except Exception as err:  # a refused or dropped connection is an error the report must show
            statuses[type(err).__name__] += 1


async def load(base: str, keys: list[str], requests: int, max_tokens: int) -> dict:
    import httpx

    latencies, statuses = [], Counter()
    limits = httpx.Limits(max_connections=len(keys) + 5, max_keepalive_connections=len(keys) + 5)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http, base, key, requests, max_tokens, latencies, statuses)
                               for key in keys))
        wall = time.perf_counter() - started
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else None

    return {"clients": len(keys), "requests_per_client": requests, "max_tokens": max_tokens,
            "total": len(keys) * requests, "ok": statuses.get(200, 0),
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
            "errors_other_than_429_503": sum(v for k, v in statuses.items() if k not in (200, 429, 503)),
            "wall_s": round(wall, 1), "requests_per_s": round(len(keys) * requests / wall, 1),
            "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0),
                           "mean": round(statistics.mean(latencies) * 1000, 1) if latencies else None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200, help="per client")
    parser.add_argument("--max-tokens", type=int, default=1)
    parser.add_argument("--overload", action="store_true", help="also run a phase with queue_size=4")
    args = parser.parse_args()

    keys = [f"load-key-{i}" for i in range(args.clients)]
    env = {"COGUMI_API_KEYS": ",".join(keys)}
    result = {"benchmark": "serve_load"}
    # The configured limits (conf/stage/serve.yaml): queue 64 >= 50 clients, 600 req/min per key.
    with running_server("stage.run.chat_page=false", "stage.run.request_log=null", env=env) as (base, _):
        result["configured_limits"] = asyncio.run(load(base, keys, args.requests, args.max_tokens))
        print(json.dumps(result["configured_limits"]), flush=True)
    if args.overload:
        with running_server("stage.run.chat_page=false", "stage.run.request_log=null",
                            "stage.run.limits.queue_size=4", env=env) as (base, _):
            result["overload_queue_4"] = asyncio.run(load(base, keys, max(1, args.requests // 10),
                                                          args.max_tokens))
    result["goal_zero_errors_under_limits"] = (
        result["configured_limits"]["ok"] == result["configured_limits"]["total"])
    # Other work on the machine moves absolute numbers a lot on 2 cores: record how busy it was.
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
