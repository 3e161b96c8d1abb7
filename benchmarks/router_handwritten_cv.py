"""Leave-one-file-out cross-validation of the router's head over the DEV hand-written files.

Chooses router levers on dev data only (HELDOUT.md): for each held file among the earlier hand-written
files, a logistic head is fitted on the artifact's train split (cleaned rows dropped, as the stage fits)
plus the other dev files at `--weight`, and scores the held file; the last dev file (the boundary
queries) is always in the fit. Also the test split of a head fitted on all dev files. The held-out file
(domain_data.HANDWRITTEN_HELDOUT) is never read. Prints JSON, writes benchmarks/results/router_handwritten_cv.json.

    .venv/bin/python benchmarks/router_handwritten_cv.py --router <router artifact folder> [--weights 0,10,20]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "router_handwritten_cv.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", required=True, help="a router artifact folder (its splits.jsonl and encoder)")
    parser.add_argument("--weights", default="0,10,20")
    parser.add_argument("--c", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from cogumi.router import domain_data
    from cogumi.router.embedding import Encoder
    from cogumi.router.heads import train_logistic
    from cogumi.router.model import SPEC_FILE, encoder_settings
    from cogumi.stats import compare_paired, proportion

    folder = Path(args.router)
    spec = json.loads((folder / SPEC_FILE).read_text())
    names = list(spec["domains"])
    rows = [json.loads(line) for line in (folder / "splits.jsonl").read_text().splitlines() if line]
    dev = {p.name: domain_data.handwritten_queries(p) for p in domain_data.HANDWRITTEN_DEV}
    assert domain_data.HANDWRITTEN_HELDOUT.name not in dev
    held_files, always = list(dev)[:-1], list(dev)[-1]
    encoder = Encoder(threads=args.threads, layers=encoder_settings(spec)[0], quantize=encoder_settings(spec)[1])
    vectors = encoder.encode([r["text"] for r in rows] + [q.text for qs in dev.values() for q in qs])
    xb, hand_vectors = vectors[:len(rows)], vectors[len(rows):]
    yb = np.array([names.index(r["domain"]) for r in rows])
    split = np.array([r["split"] for r in rows])
    kept = np.array(["dropped" not in r for r in rows])
    hand, start = {}, 0
    for name, qs in dev.items():
        hand[name] = (hand_vectors[start:start + len(qs)], np.array([names.index(q.domain) for q in qs]))
        start += len(qs)
    train, test = (split == "train") & kept, (split == "test") & kept

    def head(files, weight):
        x = np.vstack([xb[train]] + [hand[f][0] for f in files])
        y = np.concatenate([yb[train]] + [hand[f][1] for f in files])
        w = np.concatenate([np.ones(train.sum())] + [np.full(len(hand[f][1]), float(weight)) for f in files])
        return train_logistic(x, y, len(names), c=args.c, seed=1234, class_weight="balanced", sample_weight=w)

    result = {"router": str(folder), "held_files": held_files, "always_in_fit": [always], "c": args.c, "runs": {}}
    hits_by = {}
    for boundary in (False, True):
        for weight in [float(w) for w in args.weights.split(",")]:
            label = f"weight={weight:g}" + (f"+{always}" if boundary else "")
            hits, per_file = [], {}
            for held in held_files:
                fit_files = [f for f in held_files if f != held] + ([always] if boundary else [])
                ok = head(fit_files, weight).probabilities(hand[held][0]).argmax(1) == hand[held][1]
                per_file[held] = proportion(int(ok.sum()), len(ok)).to_dict()
                hits.append(ok)
            hits_by[label] = np.concatenate(hits)
            all_files = held_files + ([always] if boundary else [])
            test_ok = head(all_files, weight).probabilities(xb[test]).argmax(1) == yb[test]
            result["runs"][label] = {"lofo": proportion(int(hits_by[label].sum()), len(hits_by[label])).to_dict(),
                                     "per_file": per_file,
                                     "test_split": proportion(int(test_ok.sum()), len(test_ok)).to_dict()}
    reference = next(iter(hits_by))
    for label, hits in hits_by.items():
        if label != reference:
            result["runs"][label][f"paired_vs_{reference}"] = compare_paired(
                hits.astype(float), hits_by[reference].astype(float)).__dict__
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    json.dump(result, sys.stdout, indent=2, default=str)
    print()


if __name__ == "__main__":
    main()
