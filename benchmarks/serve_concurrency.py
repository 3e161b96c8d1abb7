"""Concurrent streaming clients: `engine=llama-server` (parallel slots, continuous batching) vs the
in-process engine (one generation at a time), same GGUF, same threads, same run.

Each round, N clients start together and stream `--max-tokens` tokens (greedy, on the base route;
`ignore_eos`-free prompts chosen to run long). Aggregate decode rate = all completion tokens / the
round's wall time; TTFT is per client, as each sees it (queueing included). Goal from the issue:
llama-server >= 2x the in-process aggregate tok/s, p99 TTFT reported for both, 0 errors.
Prints JSON and writes benchmarks/results/serve_concurrency.json.

    .venv/bin/python benchmarks/serve_concurrency.py [--clients 8 --max-tokens 64 --rounds 2 --parallel 8]
"""

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cogumi.serve.launch import running_server  # noqa: E402

from results_file import write_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_concurrency.json"
PROMPTS = ["Write a long story about a lighthouse keeper.", "Explain in detail how a bicycle works.",
           "Describe the history of paper, step by step.", "Write a detailed recipe for bread.",
           "Explain how the internet routes a message.", "Describe a walk through a forest in autumn.",
           "Write a letter to a friend about a trip to the sea.", "Explain photosynthesis to a child."]


async def one_client(http, base: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": "base", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    started, first, tokens = time.perf_counter(), None, 0
    try:
        async with http.stream("POST", f"{base}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return {"error": str(response.status_code)}
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return {"error": event["error"].get("message", "error")}
                if event.get("choices") and event["choices"][0]["delta"].get("content"):
                    first = first or time.perf_counter()
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
    except Exception as err:  # a dropped connection is an error the report must show
        return {"error": type(err).__name__}
    return {"ttft_ms": ((first or time.perf_counter()) - started) * 1000, "tokens": tokens}


async def rounds(base: str, clients: int, max_tokens: int, count: int) -> dict:
    import httpx

    ttfts, tokens, walls, errors = [], 0, [], []
    async with httpx.AsyncClient(timeout=600) as http:
        await one_client(http, base, "warm up", 4)
        for _ in range(count):
            started = time.perf_counter()
            results = await asyncio.gather(*(one_client(http, base, PROMPTS[i % len(PROMPTS)], max_tokens)
                                             for i in range(clients)))
            walls.append(time.perf_counter() - started)
            errors += [r["error"] for r in results if "error" in r]
            ttfts += [r["ttft_ms"] for r in results if "ttft_ms" in r]
            tokens += sum(r.get("tokens", 0) for r in results)
    ttfts.sort()

    def pct(p):
        return round(ttfts[min(len(ttfts) - 1, int(p * len(ttfts)))], 1) if ttfts else None

    return {"rounds": count, "clients": clients, "completion_tokens": tokens, "wall_s": round(sum(walls), 2),
            "aggregate_tokens_per_s": round(tokens / sum(walls), 1), "errors": len(errors),
            "error_kinds": sorted(set(errors)), "ttft_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8, help="llama-server slots")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    common = ("stage.run.chat_page=false", "stage.run.request_log=null", "stage.run.router=null",
              "stage.run.modifiers=null", "stage.run.model=base", "stage.run.n_ctx=512",
              f"stage.run.n_threads={args.threads}")
    env = {"COGUMI_API_KEYS": ""}
    result = {"benchmark": "serve_concurrency", "threads": args.threads, "max_tokens": args.max_tokens}
    for engine, extra in (("in-process", ()), ("llama-server", (f"stage.run.llama_server.parallel={args.parallel}",))):
        with running_server(*common, f"stage.run.engine={engine}", *extra, env=env) as (base, _):
            result[engine] = asyncio.run(rounds(base, args.clients, args.max_tokens, args.rounds))
        print(json.dumps({engine: result[engine]}), flush=True)
    result["llama_server_vs_in_process_tokens_per_s"] = round(
        result["llama-server"]["aggregate_tokens_per_s"] / result["in-process"]["aggregate_tokens_per_s"], 2)
    result["goal_llama_server_ge_2x"] = result["llama_server_vs_in_process_tokens_per_s"] >= 2
    result["goal_zero_errors"] = result["in-process"]["errors"] == 0 and result["llama-server"]["errors"] == 0
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    write_result(result, RESULTS)


if __name__ == "__main__":
    main()
