"""`train.py stage=escalation`: the dissatisfaction detector (MiniLM embeddings + logistic regression).

Trained on pattern complaints vs shipped conversation turns and pattern satisfied follow-ups. The
hand-written turns (escalation_eval.jsonl, no pattern produced them) come in batches: the `dev`
batches choose the decision threshold (max F1; a threshold chosen on the pattern validation split
sat too high for complaints unlike the templates: recall 0.55 there vs 0.82 on dev), the other
batches are the held-out split, measured once: precision/recall/F1 per class, alone and together
with held-out conversation turns (more negatives). With `dev_weight` > 0 the dev turns also join the
fit (weighted: 200 varied hand-written turns teach more than 2,500 templated ones) and the threshold
is chosen on their cross-fitted scores (each from a head that did not see that turn).
"""

import json
import logging

import numpy as np

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.evaluate.clustering import embedder_dir
from cogumi.router import escalation_data
from cogumi.router.embedding import Encoder
from cogumi.router.escalation import SPEC_FILE
from cogumi.router.heads import train_logistic
from cogumi.stage import StageContext
from cogumi.stats import proportion

log = logging.getLogger(__name__)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score cut with the highest F1 (sklearn's precision-recall curve)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


def precision_threshold(scores: np.ndarray, labels: np.ndarray, min_precision: float | None) -> float:
    """The score cut with the highest recall whose precision is >= `min_precision` (None, or no cut
    reaching it: the max-F1 cut). Precision is what a false alarm costs: an escalation to the teacher."""
    from sklearn.metrics import precision_recall_curve

    if min_precision is None:
        return best_threshold(scores, labels)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    reaching = np.flatnonzero(precision[:-1] >= float(min_precision))
    if not len(reaching):
        return best_threshold(scores, labels)
    return float(thresholds[reaching[int(np.argmax(recall[:-1][reaching]))]])


def cross_fitted_scores(x_fit: np.ndarray, y_fit: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray, c: float,
                        dev_weight: float, folds: int, seed: int) -> np.ndarray:
    """Each dev turn's score from a head fitted on the pattern turns plus the other dev folds (weight
    `dev_weight`), so the threshold chosen on them is not chosen on the turns the head saw."""
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(y_dev))
    for seen, unseen in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x_dev, y_dev):
        weight = np.concatenate([np.ones(len(y_fit)), np.full(len(seen), float(dev_weight))])
        head = train_logistic(np.vstack([x_fit, x_dev[seen]]), np.concatenate([y_fit, y_dev[seen]]), 2, c=c,
                              seed=seed, sample_weight=weight)
        scores[unseen] = head.probabilities(x_dev[unseen])[:, 1]
    return scores


def class_report(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Per class precision/recall/F1, with Wilson intervals on the dissatisfied class's P and R."""
    from sklearn.metrics import precision_recall_fscore_support

    predicted = (scores >= threshold).astype(int)
    p, r, f, support = precision_recall_fscore_support(labels, predicted, labels=[0, 1], zero_division=0)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    report = {name: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4), "f1": round(float(f[i]), 4),
                     "support": int(support[i])} for i, name in enumerate(("satisfied", "dissatisfied"))}
    report["dissatisfied"]["precision_interval"] = proportion(tp, int(predicted.sum())).to_dict()
    report["dissatisfied"]["recall_interval"] = proportion(tp, int(labels.sum())).to_dict()
    return report


def run(ctx: StageContext, sources: dict, negative_sources: list[str], negatives_per_source: int, positives: int,
        satisfied: int, val_share: float, test_share: float, heldout_negatives: int, c: float,
        dev_batches: list[str] = ("first", "second"), dev_weight: float = 0.0, dev_folds: int = 5,
        min_precision: float | None = None, encoder_layers: int | None = None, encoder_quantize: str | None = None,
        seed: int = 1234) -> Artifact:
    inputs = {"encoder": embedder_dir(), "patterns": escalation_data.PATTERNS, "eval": escalation_data.EVAL_TURNS,
              "heldout": escalation_data.HELDOUT_TURNS}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    negatives = escalation_data.conversation_negatives(list(negative_sources), sources, negatives_per_source,
                                                       val_share, test_share, seed)
    train_pos = escalation_data.pattern_positives(positives, val_share, seed)
    train_pos += escalation_data.pattern_satisfied(satisfied, val_share, seed)
    dev_batches = set(dev_batches)
    written_turns = escalation_data.evaluation_turns()
    dev = [t for t in written_turns if t.source["written"] in dev_batches]
    evaluation = [t for t in written_turns if t.source["written"] not in dev_batches]
    if not dev or not evaluation:
        raise ConfigError(f"stage.run.dev_batches={sorted(dev_batches)}: {escalation_data.EVAL_TURNS.name} needs "
                          f"turns both in and outside the dev batches (dev {len(dev)}, held-out {len(evaluation)})")
    heldout = [t for t in negatives if t.split == "test"][:heldout_negatives]
    fitting = [t for t in train_pos + negatives if t.split in ("train", "val")]
    encoder = Encoder(threads=ctx.hardware.threads, layers=encoder_layers, quantize=encoder_quantize)
    turns = fitting + dev + evaluation + heldout
    vectors = encoder.encode([t.text for t in turns], progress=True)
    labels = np.array([t.label for t in turns])
    split = np.array([t.split for t in fitting] + ["dev"] * len(dev) + ["eval"] * len(evaluation)
                     + ["heldout"] * len(heldout))

    train, val, on_dev = split == "train", split == "val", split == "dev"
    if dev_weight:  # the dev turns join the fit; the threshold comes from their cross-fitted scores
        dev_scores = cross_fitted_scores(vectors[train], labels[train], vectors[on_dev], labels[on_dev],
                                         c, dev_weight, dev_folds, seed)
        fit_x, fit_y = np.vstack([vectors[train], vectors[on_dev]]), np.concatenate([labels[train], labels[on_dev]])
        weight = np.concatenate([np.ones(int(train.sum())), np.full(int(on_dev.sum()), float(dev_weight))])
        head = train_logistic(fit_x, fit_y, 2, c=c, seed=seed, sample_weight=weight)
        scores = head.probabilities(vectors)[:, 1]
    else:
        head = train_logistic(vectors[train], labels[train], 2, c=c, seed=seed)
        scores = head.probabilities(vectors)[:, 1]
        dev_scores = scores[on_dev]
    threshold = precision_threshold(dev_scores, labels[on_dev], min_precision)
    written = split == "eval"
    with_heldout = written | (split == "heldout")
    rule = "max F1" if min_precision is None else f"max recall at precision >= {min_precision}"
    chosen_on = f"dev batches {sorted(dev_batches)} ({rule}" + (f", {dev_folds}-fold cross-fitted)" if dev_weight else ")")
    report = {"threshold": threshold, "threshold_chosen_on": chosen_on,
              "validation": class_report(scores[val], labels[val], threshold),
              "dev": class_report(dev_scores, labels[on_dev], threshold),  # optimistic: the threshold's own
              "handwritten": class_report(scores[written], labels[written], threshold),
              "handwritten_plus_heldout_turns": class_report(scores[with_heldout], labels[with_heldout], threshold),
              "counts": {s: {"dissatisfied": int(labels[split == s].sum()), "total": int((split == s).sum())}
                         for s in ("train", "val", "dev", "eval", "heldout")}}
    with ctx.create_artifact(inputs) as out:
        head.save(out.dir / "head.npz")
        spec = {"head": "head.npz", "threshold": threshold, "encoder": encoder.identity,
                "labels": ["satisfied", "dissatisfied"]}
        (out.dir / SPEC_FILE).write_text(json.dumps(spec, indent=2))
        (out.dir / "report.json").write_text(json.dumps(report, indent=2))
        scored = scores[with_heldout]
        _write_jsonl(out.dir / "eval_scores.jsonl", [{"text": t.text, "label": t.label, "score": round(float(s), 4),
                                                     "source": t.source} for t, s in zip(evaluation + heldout, scored)])
        _write_jsonl(out.dir / "training_turns.jsonl", [{"text": t.text, "label": t.label, "split": t.split,
                                                        "source": t.source} for t in fitting])
        out.metrics.update(_metrics(report, int(written.sum()), int(with_heldout.sum()), threshold,
                                    sum((out.dir / f).stat().st_size for f in ("head.npz", SPEC_FILE)) / 1e6))
        out.extra["data"] = {"negative_sources": list(negative_sources), "patterns": escalation_data.PATTERNS.name,
                             "eval": [escalation_data.EVAL_TURNS.name, escalation_data.HELDOUT_TURNS.name],
                             "dev_batches": sorted(dev_batches),
                             "counts": report["counts"]}
        log.info("escalation: %s", report["handwritten"])
    return out.artifact


def _write_jsonl(path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _metrics(report: dict, eval_turns: int, with_heldout: int, threshold: float, size_mb: float) -> dict:
    hand, dev = report["handwritten"]["dissatisfied"], report["dev"]["dissatisfied"]
    return {"precision": hand["precision"], "recall": hand["recall"], "f1": hand["f1"], "eval_turns": eval_turns,
            "precision_low": hand["precision_interval"]["low"], "recall_low": hand["recall_interval"]["low"],
            "threshold": round(threshold, 4), "heldout_turns": with_heldout,
            "precision_with_heldout": report["handwritten_plus_heldout_turns"]["dissatisfied"]["precision"],
            "dev_recall": dev["recall"], "dev_precision": dev["precision"],
            "detector_size_mb": round(size_mb, 4)}
