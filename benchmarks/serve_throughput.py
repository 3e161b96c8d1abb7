"""Decode tok/s and time-to-first-token through the API vs raw llama-cpp-python, in the same run.

Same GGUF, same threads, same greedy prompts (so both sides generate the same tokens). Requests are
interleaved raw, API, raw, API ... so load from elsewhere on the machine hits both alike. The API
side is measured as a client sees it (openai client, streaming, loopback); decode rate = tokens
after the first / time after the first. Goal from the issue: API decode >= 90 % of raw.
Prints JSON and writes benchmarks/results/serve_throughput.json.

    .venv/bin/python benchmarks/serve_throughput.py [--rounds 3] [--max-tokens 64] [--threads 1 --out x.json]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cogumi.assets import embedded_model_dir  # noqa: E402
from cogumi.serve.launch import running_server  # noqa: E402

from results_file import write_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_throughput.json"
PROMPTS = ["Explain why the sky is blue.", "Write a short story about a robot learning to paint.",
           "List five uses of a paperclip.", "What is the difference between a virus and a bacterium?"]


def _rates(started: float, first: float | None, ended: float, tokens: int) -> dict:
    first = first or ended
    return {"ttft_ms": (first - started) * 1000, "tokens": tokens,
            "decode_tps": (tokens - 1) / (ended - first) if tokens > 1 and ended > first else None}


def _count(llm, text: str) -> int:
    """Both sides count tokens the same way: the generated text, tokenized (SSE events may hold several)."""
    return len(llm.tokenize(text.encode(), add_bos=False, special=True)) if text else 0


def raw_request(llm, formatter, eos, prompt: str, max_tokens: int) -> dict:
    text_prompt = formatter(messages=[{"role": "user", "content": prompt}]).prompt
    started, first, pieces = time.perf_counter(), None, []
    for chunk in llm.create_completion(text_prompt, max_tokens=max_tokens, temperature=0, stop=[eos], stream=True):
        if chunk["choices"][0]["text"]:
            first = first or time.perf_counter()
            pieces.append(chunk["choices"][0]["text"])
    ended = time.perf_counter()
    return _rates(started, first, ended, _count(llm, "".join(pieces)))


def api_request(llm, client, prompt: str, max_tokens: int) -> dict:
    started, first = time.perf_counter(), None
    stream = client.chat.completions.create(model="base", messages=[{"role": "user", "content": prompt}],
                                            max_tokens=max_tokens, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            pieces.append(chunk.choices[0].delta.content)
    ended = time.perf_counter()
    return _rates(started, first, ended, _count(llm, "".join(pieces)))


def summarise(samples: list[dict]) -> dict:
    decode = [s["decode_tps"] for s in samples if s["decode_tps"]]
    return {"requests": len(samples), "decode_tps_median": round(statistics.median(decode), 1),
            "ttft_ms_median": round(statistics.median(s["ttft_ms"] for s in samples), 1),
            "tokens_mean": round(statistics.mean(s["tokens"] for s in samples), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="passes over the prompts")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="llama.cpp threads, both sides")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    import openai
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    gguf = embedded_model_dir() / "source.gguf"
    threads = args.threads
    llm = Llama(str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    text_of = llm._model.token_get_text
    eos = text_of(llm.token_eos())
    formatter = Jinja2ChatFormatter(llm.metadata["tokenizer.chat_template"], eos, text_of(llm.token_bos()))
    raw, api = [], []
    with running_server("stage.run.chat_page=false", "stage.run.request_log=null", f"hardware.threads={threads}",
                        env={"COGUMI_API_KEYS": ""}) as (base, _):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        api_request(llm, client, "warm up", 4)
        raw_request(llm, formatter, eos, "warm up", 4)
        for _ in range(args.rounds):
            for prompt in PROMPTS:
                raw.append(raw_request(llm, formatter, eos, prompt, args.max_tokens))
                api.append(api_request(llm, client, prompt, args.max_tokens))
    result = {"benchmark": "serve_throughput", "model": str(gguf), "threads": threads,
              "max_tokens": args.max_tokens, "raw_llama_cpp": summarise(raw), "api_streaming": summarise(api)}
    result["api_vs_raw_decode"] = round(result["api_streaming"]["decode_tps_median"]
                                        / result["raw_llama_cpp"]["decode_tps_median"], 3)
    result["api_minus_raw_ttft_ms"] = round(result["api_streaming"]["ttft_ms_median"]
                                            - result["raw_llama_cpp"]["ttft_ms_median"], 1)
    result["goal_api_decode_ge_90pct_of_raw"] = result["api_vs_raw_decode"] >= 0.9
    # Other work on the machine moves absolute numbers a lot on 2 cores: record how busy it was.
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    write_result(result, Path(args.out))


if __name__ == "__main__":
    main()
