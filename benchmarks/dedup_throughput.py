"""Dedup throughput, peak memory and planted-duplicate recall/precision vs a naive datasketch baseline.

Synthetic ~1 KB English-like documents (random words from a 20k vocabulary); `--dup-share` of them
are near copies of an earlier document (2-6 words replaced: character-3-gram Jaccard ~0.85-0.95).
Each (method, size) runs in its own process so peak RSS is its own. Methods:
  naive        one datasketch MinHash per document (update_batch over its shingles, sha1), serial
               MinHashLSH query + insert — the baseline the issue names
  datasketch   cogumi.data.dedup with datasketch's MinHashLSH as the index, signatures in workers
  compact      cogumi.data.dedup with the compact band index
Prints JSON and writes benchmarks/results/dedup_throughput.json.

    .venv/bin/python benchmarks/dedup_throughput.py                       # 10k, 100k, 640k
    .venv/bin/python benchmarks/dedup_throughput.py --sizes 10000 --baseline-sizes 10000
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_result

RESULTS = Path(__file__).parent / "results" / "dedup_throughput.json"


def _vocabulary(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(20_000)]


def _doc(i: int, vocab: list[str]) -> str:
    rng = random.Random(i)
    words, size = [], 0
    while size < 1000:
        w = rng.choice(vocab)
        words.append(w)
        size += len(w) + 1
    return " ".join(words)


def write_corpus(path: Path, n: int, dup_share: float) -> list[int]:
    """One document per line; returns the indices of planted near copies (the ground truth)."""
    vocab, rng, planted, originals = _vocabulary(), random.Random(12345), [], []
    with open(path, "w") as out:
        for i in range(n):
            if originals and rng.random() < dup_share:
                words = _doc(1_000_000 + rng.choice(originals), vocab).split()  # an earlier original
                for _ in range(rng.randint(2, 6)):
                    words[rng.randrange(len(words))] = rng.choice(vocab)
                text = " ".join(words)
                planted.append(i)
            else:
                text = _doc(1_000_000 + i, vocab)
                originals.append(i)
            out.write(text + "\n")
    return planted


def _items(path: Path):
    with open(path) as lines:
        for line in lines:
            yield line.rstrip("\n"), 1.0  # equal quality: the earlier document (the original) is kept


def run_method(method: str, corpus: Path, workers: int) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    if method == "naive":
        removed = _naive(corpus)
    else:
        from cogumi.data.dedup import MinHashParams, deduplicate

        result = deduplicate(lambda: _items(corpus), MinHashParams(index=method), workers=workers)
        removed = result.exact_removed | result.near_removed
    elapsed = time.perf_counter() - started
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds next to wall time: on a shared machine wall-clock docs/s understates the code.
    cpu = time.process_time() - cpu_started + children.ru_utime + children.ru_stime  # imports excluded
    return {"seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2), "removed": sorted(removed),
            "peak_rss_mb": round(own.ru_maxrss / 1024, 1), "peak_rss_worker_mb": round(children.ru_maxrss / 1024, 1)}


def _naive(corpus: Path) -> set:
    from datasketch import MinHash, MinHashLSH

    lsh, removed = MinHashLSH(threshold=0.8, num_perm=128), set()
    for index, (text, _) in enumerate(_items(corpus)):
        text = " ".join(text.lower().split())
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([text[i:i + 3].encode() for i in range(len(text) - 2)])
        if lsh.query(m):
            removed.add(index)
        else:
            lsh.insert(index, m)
    return removed


def measure(method: str, size: int, corpus: Path, planted: list[int], workers: int) -> dict:
    """Run one method in a fresh process (its own peak RSS) and score it against the planted set."""
    out = subprocess.run([sys.executable, __file__, "--one", method, str(corpus), str(workers)],
                         capture_output=True, text=True, check=True)
    run = json.loads(out.stdout.strip().splitlines()[-1])
    removed, truth = set(run.pop("removed")), set(planted)
    hits = len(removed & truth)
    return {"method": method, "docs": size, "workers": workers if method != "naive" else 1, **run,
            "docs_per_s": round(size / run["seconds"], 1),
            "docs_per_cpu_s": round(size / max(run.get("cpu_seconds", 0), 1e-9), 1),
            "planted": len(truth), "removed_count": len(removed),
            "recall": round(hits / max(1, len(truth)), 4), "precision": round(hits / max(1, len(removed)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 640_000])
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[10_000],
                        help="sizes the naive baseline also runs on (~200 docs/s: 640k would take ~1 h)")
    parser.add_argument("--methods", nargs="+", default=["datasketch", "compact"])
    parser.add_argument("--dup-share", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        for size in args.sizes:
            corpus = Path(tmp) / f"corpus-{size}.txt"
            planted = write_corpus(corpus, size, args.dup_share)
            methods = (["naive"] if size in args.baseline_sizes else []) + args.methods
            for method in methods:
                row = measure(method, size, corpus, planted, args.workers)
                print(json.dumps(row), flush=True)
                rows.append(row)
            corpus.unlink()
    summary = {"benchmark": "dedup_throughput", "doc_bytes": 1000, "dup_share": args.dup_share,
               "cpu_count": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "results": rows}
    write_result(summary, RESULTS)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        method, corpus, workers = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(run_method(method, corpus, workers)))
    else:
        main()
