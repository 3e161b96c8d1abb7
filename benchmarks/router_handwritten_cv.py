"""Leave-one-file-out cross-validation of the router's head over the DEV hand-written files.

Chooses router levers on dev data only (HELDOUT.md): each earlier hand-written file (sets 1-4 held out
once, the boundary file, dev_2) is held in turn and scored by a logistic head fitted on the artifact's train split
(cleaned rows dropped, as the stage fits) plus the other dev files at `--weight`; the newest dev file
(`--always`, written this sitting) is always in the fit, minus its queries too close to the held file
(MiniLM 6-layer cosine > 0.70 or word Jaccard > 0.5, the leakage guard a fresh set gets). Each run is
compared, paired, with the first (McNemar). Also the test split of a head fitted on all dev files.
"Unknown" (top probability under --min-domain-probability) counts as wrong. The held-out file
(domain_data.HANDWRITTEN_HELDOUT) is never read. Prints JSON, writes benchmarks/results/router_handwritten_cv.json.

    .venv/bin/python benchmarks/router_handwritten_cv.py --router <router artifact folder> \\
        --runs "weight=10,lexical=wc,scale=0.5;weight=10,lexical=wc,scale=0.5,always,c=20" \\
        [--min-domain-probability 0.3]
"""

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from results_file import write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "router_handwritten_cv.json"
NGRAMS = {"w": {"word": [1, 2]}, "c": {"char": [2, 5]}}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def too_close(texts: list[str], vectors: np.ndarray, held_texts: list[str], held_vectors: np.ndarray) -> np.ndarray:
    """Rows of `texts` within the leakage guard's reach of any held text."""
    cosine = (vectors @ held_vectors.T).max(1)
    held = [_words(t) for t in held_texts]
    jaccard = np.array([max(len(a & b) / max(len(a | b), 1) for b in held) for a in map(_words, texts)])
    return (cosine > 0.70) | (jaccard > 0.5)


def parse_run(text: str) -> dict:
    run = {"weight": 10.0, "lexical": "", "scale": 1.0, "always": False, "c": None}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        run[key] = True if key == "always" else (value if key == "lexical" else float(value))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", required=True, help="a router artifact folder (its splits.jsonl and encoder)")
    parser.add_argument("--runs", default="weight=10;weight=10,always;weight=10,lexical=wc,always",
                        help="';'-separated runs: weight=W, lexical=w|c|wc, scale=S, c=C (else --c), "
                             "always (fit the newest file)")
    parser.add_argument("--c", type=float, default=10.0)
    parser.add_argument("--min-domain-probability", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from cogumi.router import domain_data
    from cogumi.router.embedding import Encoder
    from cogumi.router.heads import train_logistic
    from cogumi.router.lexical import LexicalFeatures, combine
    from cogumi.router.model import SPEC_FILE, encoder_settings
    from cogumi.stats import compare_paired, proportion

    folder = Path(args.router)
    spec = json.loads((folder / SPEC_FILE).read_text())
    names = list(spec["domains"])
    rows = [json.loads(line) for line in (folder / "splits.jsonl").read_text().splitlines() if line]
    dev = {p.name: domain_data.handwritten_queries(p) for p in domain_data.HANDWRITTEN_DEV}
    assert domain_data.HANDWRITTEN_HELDOUT.name not in dev
    held_files, always = list(dev)[:-1], list(dev)[-1]
    hand_texts = {f: [q.text for q in qs] for f, qs in dev.items()}
    encoder = Encoder(threads=args.threads, layers=encoder_settings(spec)[0], quantize=encoder_settings(spec)[1])
    vectors = encoder.encode([r["text"] for r in rows] + [t for ts in hand_texts.values() for t in ts])
    guard = Encoder(threads=args.threads)  # all 6 layers, as the leakage guard measures
    guard_vectors = {f: guard.encode(ts) for f, ts in hand_texts.items()}
    xb, hand_vectors = vectors[:len(rows)], vectors[len(rows):]
    yb = np.array([names.index(r["domain"]) for r in rows])
    split = np.array([r["split"] for r in rows])
    kept = np.array(["dropped" not in r for r in rows])
    train, test = (split == "train") & kept, (split == "test") & kept
    texts_b = [r["text"] for r in rows]
    hand, start = {}, 0
    for name, qs in dev.items():
        hand[name] = (hand_vectors[start:start + len(qs)], np.array([names.index(q.domain) for q in qs]))
        start += len(qs)
    close = {held: too_close(hand_texts[always], guard_vectors[always], hand_texts[held], guard_vectors[held])
             for held in held_files}

    def fit_and_score(run, files, keep_always, eval_x, eval_texts):
        parts = [(xb[train], yb[train], [t for t, k in zip(texts_b, train) if k], 1.0)]
        for f in files:
            keep = keep_always if f == always else np.ones(len(hand[f][1]), dtype=bool)
            parts.append((hand[f][0][keep], hand[f][1][keep], [t for t, k in zip(hand_texts[f], keep) if k],
                          run["weight"]))
        x = np.vstack([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        texts = [t for p in parts for t in p[2]]
        w = np.concatenate([np.full(len(p[1]), p[3]) for p in parts])
        lexical = None
        if run["lexical"]:
            ngrams = {k: v for key in run["lexical"] for k, v in NGRAMS[key].items()}
            lexical = LexicalFeatures.fit(texts, ngrams, min_df=2, scale=run["scale"])
        head = train_logistic(combine(x, lexical, texts), y, len(names), c=run["c"] or args.c, seed=1234,
                              class_weight="balanced", sample_weight=w)
        return head.probabilities(combine(eval_x, lexical, eval_texts))

    def hits(p, y):
        return (p.argmax(1) == y) & (p.max(1) >= args.min_domain_probability)

    result = {"router": str(folder), "held_files": held_files, "always_file": always, "c": args.c,
              "min_domain_probability": args.min_domain_probability,
              "always_dropped_per_held_file": {f: int(m.sum()) for f, m in close.items()}, "runs": {}}
    hits_by = {}
    for label in args.runs.split(";"):
        run = parse_run(label)
        per_file, all_hits = {}, []
        for held in held_files:
            files = [f for f in held_files if f != held] + ([always] if run["always"] else [])
            ok = hits(fit_and_score(run, files, ~close[held], hand[held][0], hand_texts[held]), hand[held][1])
            per_file[held] = proportion(int(ok.sum()), len(ok)).to_dict()
            all_hits.append(ok)
        hits_by[label] = np.concatenate(all_hits)
        files = held_files + ([always] if run["always"] else [])
        ok = fit_and_score(run, files, np.ones(len(hand[always][1]), dtype=bool), xb[test],
                           [t for t, k in zip(texts_b, test) if k]).argmax(1) == yb[test]
        result["runs"][label] = {"lofo": proportion(int(hits_by[label].sum()), len(hits_by[label])).to_dict(),
                                 "per_file": per_file, "test_split": proportion(int(ok.sum()), len(ok)).to_dict()}
        print(label, json.dumps({k: v["value"] for k, v in per_file.items()}), "lofo", hits_by[label].mean(),
              "test", ok.mean(), file=sys.stderr, flush=True)
    reference = next(iter(hits_by))
    sizes = np.cumsum([0] + [len(hand[f][1]) for f in held_files])
    for label, hit in hits_by.items():
        if label != reference:
            paired = {"all": compare_paired(hit.astype(float), hits_by[reference].astype(float)).__dict__}
            for f, lo, hi in zip(held_files, sizes[:-1], sizes[1:]):
                paired[f] = compare_paired(hit[lo:hi].astype(float), hits_by[reference][lo:hi].astype(float)).__dict__
            result["runs"][label][f"paired_vs_{reference}"] = paired
    write_result(result, RESULTS)


if __name__ == "__main__":
    main()
