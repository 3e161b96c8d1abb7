"""`train.py stage=escalation`: the dissatisfaction detector (MiniLM embeddings + logistic regression).

Trained on pattern complaints vs shipped conversation turns; the decision threshold maximises F1 on
the validation split; precision/recall/F1 per class are measured on hand-written turns that no
pattern produced, alone and together with held-out conversation turns (more negatives).
"""

import json
import logging

import numpy as np

from cogumi.artifacts import Artifact
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
        val_share: float, test_share: float, heldout_negatives: int, c: float, seed: int = 1234) -> Artifact:
    inputs = {"encoder": embedder_dir(), "patterns": escalation_data.PATTERNS, "eval": escalation_data.EVAL_TURNS}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    negatives = escalation_data.conversation_negatives(list(negative_sources), sources, negatives_per_source,
                                                       val_share, test_share, seed)
    train_pos = escalation_data.pattern_positives(positives, val_share, seed)
    evaluation = escalation_data.evaluation_turns()
    heldout = [t for t in negatives if t.split == "test"][:heldout_negatives]
    fitting = [t for t in train_pos + negatives if t.split in ("train", "val")]
    encoder = Encoder(threads=ctx.hardware.threads)
    vectors = encoder.encode([t.text for t in fitting + evaluation + heldout], progress=True)
    labels = np.array([t.label for t in fitting + evaluation + heldout])
    split = np.array([t.split for t in fitting] + ["eval"] * len(evaluation) + ["heldout"] * len(heldout))

    train, val = split == "train", split == "val"
    head = train_logistic(vectors[train], labels[train], 2, c=c, seed=seed)
    scores = head.probabilities(vectors)[:, 1]
    threshold = best_threshold(scores[val], labels[val])
    written = split == "eval"
    with_heldout = written | (split == "heldout")
    report = {"threshold": threshold, "validation": class_report(scores[val], labels[val], threshold),
              "handwritten": class_report(scores[written], labels[written], threshold),
              "handwritten_plus_heldout_turns": class_report(scores[with_heldout], labels[with_heldout], threshold),
              "counts": {s: {"dissatisfied": int(labels[split == s].sum()), "total": int((split == s).sum())}
                         for s in ("train", "val", "eval", "heldout")}}
    with ctx.create_artifact(inputs) as out:
        head.save(out.dir / "head.npz")
        (out.dir / SPEC_FILE).write_text(json.dumps({"head": "head.npz", "threshold": threshold,
                                                     "encoder": encoder.identity, "labels": ["satisfied", "dissatisfied"]}, indent=2))
        (out.dir / "report.json").write_text(json.dumps(report, indent=2))
        with (out.dir / "eval_scores.jsonl").open("w") as fh:
            for t, s in zip(evaluation + heldout, scores[written | (split == "heldout")]):
                fh.write(json.dumps({"text": t.text, "label": t.label, "score": round(float(s), 4), "source": t.source}) + "\n")
        with (out.dir / "training_turns.jsonl").open("w") as fh:
            for t in fitting:
                fh.write(json.dumps({"text": t.text, "label": t.label, "split": t.split, "source": t.source}) + "\n")
        hand = report["handwritten"]["dissatisfied"]
        out.metrics.update({"precision": hand["precision"], "recall": hand["recall"], "f1": hand["f1"],
                            "eval_turns": int(written.sum()), "threshold": round(threshold, 4),
                            "precision_with_heldout": report["handwritten_plus_heldout_turns"]["dissatisfied"]["precision"],
                            "heldout_turns": int(with_heldout.sum()),
                            "detector_size_mb": round(sum((out.dir / f).stat().st_size
                                                          for f in ("head.npz", SPEC_FILE)) / 1e6, 4)})
        out.extra["data"] = {"negative_sources": list(negative_sources), "patterns": escalation_data.PATTERNS.name,
                             "eval": escalation_data.EVAL_TURNS.name, "counts": report["counts"]}
        log.info("escalation: %s", report["handwritten"])
    return out.artifact
