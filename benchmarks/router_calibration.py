"""The base's calibrated confidence on thousands of held-out MC items (goal: ECE <= 0.05 with its interval).

The router stage fits its calibrator on `fit_items` answers of the MC sets' `train` split and measures it
on a few hundred `val` answers; this measures the same fit on every other item of the mining halves
(`val`, then the `train` items the calibrator was not fitted on; the gates' halves and the routing
evaluation's `test` split are never read). Answers are scored once through llama.cpp and cached
(`--answers`, resumable: ~7-12 items/s on 2 quiet cores), so refits cost seconds.

Writes benchmarks/results/router_calibration.json (n, ECE with 10 equal-width and 15 equal-count bins,
AUROC, Brier, each with a percentile-bootstrap interval over items, per calibrator kind, the kind the
stage would choose by cross-validated Brier) and router_calibration.png (reliability diagram).

    .venv/bin/python benchmarks/router_calibration.py [--fit-items 600] [--answers /tmp/mc_answers.jsonl]

`--folds K` (with `--score-only-cached`, for when few items could be scored): every cached item is
measured by a calibrator fitted on the other K-1 folds (the kind chosen there by cross-validated Brier,
as the stage chooses), so all n items are held out and each fit sees (K-1)/K of them.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETS = ["hellaswag", "arc_easy", "arc_challenge"]  # conf/stage/router.yaml calibration.sets


def _score(gguf: str, path: Path, threads: int, val_share: float, test_share: float) -> list[dict]:
    """Every train and val item's answer, appended to `path` as it is scored (a rerun resumes)."""
    from tqdm.auto import tqdm

    from cogumi.router import mc_answers

    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            done[(row["split"], row["id"])] = row
    todo = [(split, order, item) for split in ("train", "val")
            for order, item in enumerate(mc_answers.mc_items(SETS, split, 10**9, val_share, test_share))]
    missing = [t for t in todo if (t[0], t[2]["id"]) not in done]
    if missing:
        scorer = mc_answers.MCScorer(gguf, threads=threads, seed=1234)
        with path.open("a") as fh:
            for split, order, item in tqdm(missing, desc="base answers", mininterval=10):
                row = scorer.answer(item) | {"split": split, "order": order}
                done[(split, item["id"])] = row
                fh.write(json.dumps(row) + "\n")
                fh.flush()
    return [done[(split, item["id"])] for split, _, item in todo]


def _cross_fitted(answers: list[dict], folds: int, seed: int) -> tuple[dict, list[str]]:
    """Out-of-fold P(correct) per calibrator kind and for the kind each fold's fit chose by CV Brier."""
    from sklearn.model_selection import KFold

    from cogumi.router import confidence

    curves = {kind: np.zeros(len(answers)) for kind in (*confidence.KINDS, "chosen")}
    chosen_kinds = []
    for seen, unseen in KFold(folds, shuffle=True, random_state=seed).split(answers):
        fit, held = [answers[i] for i in seen], [answers[i] for i in unseen]
        chosen, _ = confidence.choose(fit, list(confidence.KINDS), seed)
        chosen_kinds.append(chosen.kind)
        curves["chosen"][unseen] = confidence.predict(chosen, held)
        for kind in confidence.KINDS:
            curves[kind][unseen] = confidence.predict(confidence.fit(kind, fit, seed), held)
    return curves, chosen_kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", default=str(ROOT / ".cache/cogumi/models/smollm2-135m-instruct/source.gguf"))
    parser.add_argument("--answers", default=str(Path(os.environ.get("COGUMI_OUTPUTS", ROOT / "outputs"))
                                                 / "router_calibration_answers.jsonl"))
    parser.add_argument("--fit-items", type=int, default=600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--score-only-cached", action="store_true", help="measure on the answers cached so far")
    parser.add_argument("--folds", type=int, default=0, help="cross-fit over every cached item instead")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    from cogumi.router import confidence, plots
    from cogumi.stats import proportion

    path = Path(args.answers)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.score_only_cached:
        answers = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        answers = _score(args.gguf, path, args.threads, 0.15, 0.15)
    train = sorted((a for a in answers if a["split"] == "train"), key=lambda a: a["order"])
    if args.folds:
        held, fit = [a for a in answers if a["split"] == "val"] + train, []
        curves, chosen_kinds = _cross_fitted(held, args.folds, args.seed)
        briers, chosen = None, type("Chosen", (), {"kind": "cross-fitted"})()
        curves["cross-fitted"] = curves.pop("chosen")
    else:
        fit = train[:args.fit_items]  # the stage's fit items: the first `fit_items` of the interleaved train split
        held = [a for a in answers if a["split"] == "val"] + train[args.fit_items:]
        chosen, briers = confidence.choose(fit, list(confidence.KINDS), args.seed)
        chosen_kinds = [chosen.kind]
        curves = {kind: confidence.predict(confidence.fit(kind, fit, args.seed), held) for kind in confidence.KINDS}
    correct = np.array([a["correct"] for a in held], dtype=float)
    curves["uncalibrated (option share)"] = np.array([confidence.answer_features(
        a["token_logprobs"], a["top_logprobs"], options=confidence.answer_options(a))[confidence.SHARE] for a in held])
    quality = {kind: confidence.quality(conf, correct, args.seed) for kind, conf in curves.items()}
    per_set = {name: confidence.quality(curves[chosen.kind][mask], correct[mask], args.seed)
               for name in SETS if (mask := np.array([a["set"] == name for a in held])).sum() >= 50}
    RESULTS.mkdir(parents=True, exist_ok=True)
    plots.reliability_png(RESULTS / "router_calibration.png", curves, correct,
                          f"Base confidence on {len(held)} held-out MC items "
                          + (f"(fit on {len(fit)})" if fit else f"({args.folds}-fold cross-fitted)"))
    result = {"gguf": Path(args.gguf).name, "fit_items": len(fit) or f"{args.folds}-fold cross-fit",
              "chosen_kinds": chosen_kinds, "held_out_items": len(held),
              "held_out_by_set": {name: sum(a["set"] == name for a in held) for name in SETS},
              "held_out_by_split": {s: sum(a["split"] == s for a in held) for s in ("val", "train")},
              "base_accuracy": proportion(int(correct.sum()), len(correct)).to_dict(),
              "cv_brier": briers, "chosen": chosen.kind, "quality": quality, "chosen_per_set": per_set,
              "seconds_per_item": round(float(np.mean([a["seconds"] for a in answers])), 4)}
    (RESULTS / "router_calibration.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"chosen": chosen.kind, "n": len(held)} | quality[chosen.kind], indent=2))


if __name__ == "__main__":
    main()
