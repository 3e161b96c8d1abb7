"""Router and detector training helpers on synthetic vectors: label cleaning and cross-fitted dev scores."""

import json

import numpy as np

from cogumi.router.domain_data import HANDWRITTEN_DEV, HANDWRITTEN_HELDOUT, handwritten_queries
from cogumi.router.escalation_data import HELDOUT_TURNS, evaluation_turns
from cogumi.router.train_escalation import cross_fitted_scores
from cogumi.router.train_router import implausible_labels


def _clusters(rng, per_class=60, dims=8):
    centres = np.eye(dims)[:3] * 6
    x = np.vstack([centres[k] + rng.normal(size=(per_class, dims)) for k in range(3)]).astype(np.float32)
    return x, np.repeat(np.arange(3), per_class)


def test_cleaning_drops_flipped_labels_of_the_named_source_only():
    rng = np.random.default_rng(0)
    x, y = _clusters(rng)
    noisy = y.copy()
    flipped = rng.choice(len(y), 12, replace=False)
    noisy[flipped] = (y[flipped] + 1) % 3
    origins = ["alpaca" if i % 2 == 0 else "mmlu" for i in range(len(y))]
    mask, oof = implausible_labels(x, noisy, origins, 3, {"sources": ["alpaca"], "folds": 5, "min_other": 0.5}, 0)
    alpaca_flipped = {int(i) for i in flipped if origins[i] == "alpaca"}
    assert alpaca_flipped and alpaca_flipped <= set(np.flatnonzero(mask).tolist())
    assert not any(origins[i] == "mmlu" for i in np.flatnonzero(mask))  # only the listed source is cleaned
    assert mask.sum() <= len(alpaca_flipped) + 3  # clean labels are (almost) never dropped
    assert oof.shape == (len(y), 3)


def test_dev_scores_are_cross_fitted_not_memorised():
    rng = np.random.default_rng(1)
    x_fit, y_fit = rng.normal(size=(200, 6)), rng.integers(0, 2, 200)
    x_dev, y_dev = rng.normal(size=(60, 6)), rng.integers(0, 2, 60)  # pure noise: nothing to learn
    scores = cross_fitted_scores(x_fit, y_fit, x_dev, y_dev, c=100.0, dev_weight=50.0, folds=5, seed=0)
    agreement = ((scores >= 0.5) == y_dev).mean()
    assert agreement < 0.75  # a head that had seen each dev turn (weight 50, C 100) would fit it


def test_heldout_sets_are_large_varied_sourced_and_new():
    queries = handwritten_queries(HANDWRITTEN_HELDOUT)
    domains = [q.domain for q in queries]
    assert {d: domains.count(d) for d in set(domains)} == {d: 40 for d in ("reasoning", "math", "code", "automation",
                                                                             "general")}
    rows = [json.loads(line) for line in HANDWRITTEN_HELDOUT.read_text().splitlines() if line]
    assert all(r.get("source") for r in rows)
    dev = {q.text.lower() for path in HANDWRITTEN_DEV for q in handwritten_queries(path)}
    assert not dev & {q.text.lower() for q in queries}
    turns = evaluation_turns()
    fifth = [t for t in turns if t.source["written"] == "fifth"]
    assert len(fifth) >= 120 and 0.4 <= sum(t.label for t in fifth) / len(fifth) <= 0.6
    assert {t.source["file"] for t in fifth} == {HELDOUT_TURNS.name}
    assert not {t.text.lower() for t in turns if t.source["written"] != "fifth"} & {t.text.lower() for t in fifth}


def test_logistic_c_reaches_the_head():
    from cogumi.router.train_router import fit_heads

    rng = np.random.default_rng(4)
    x, y = _clusters(rng)
    data, labels = {"train": x, "val": x, "test": x}, {"train": y, "val": y, "test": y}
    strong, _ = fit_heads(data, labels, 3, ["logistic"], {}, 0, logistic_c=0.01)
    weak, _ = fit_heads(data, labels, 3, ["logistic"], {}, 0, logistic_c=100.0)
    assert np.linalg.norm(strong.layers[0][0]) < 0.5 * np.linalg.norm(weak.layers[0][0])


def test_weighted_rows_move_the_logistic_head():
    from cogumi.router.train_router import fit_heads

    rng = np.random.default_rng(2)
    x, y = _clusters(rng)
    probe = (np.eye(8)[0] * 5 + np.eye(8)[1] * 1).astype(np.float32)[None]  # class 0's side, labelled 1
    data = {"train": np.vstack([x, probe]), "val": x, "test": x}
    labels = {"train": np.append(y, 1), "val": y, "test": y}
    plain, _ = fit_heads(data, labels, 3, ["logistic"], {}, 0)
    weight = np.append(np.ones(len(y)), 200.0)
    weighted, _ = fit_heads(data, labels, 3, ["logistic"], {}, 0, weight=weight)
    assert plain.probabilities(probe)[0].argmax() == 0 and weighted.probabilities(probe)[0].argmax() == 1


def test_precision_threshold_trades_recall_for_precision():
    from cogumi.router.train_escalation import best_threshold, precision_threshold

    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.65, 0.6, 0.5, 0.4, 0.3])
    labels = np.array([1, 1, 1, 1, 0, 1, 0, 1, 0, 0])
    assert precision_threshold(scores, labels, None) == best_threshold(scores, labels)
    cut = precision_threshold(scores, labels, 0.9)
    flagged = scores >= cut
    assert labels[flagged].mean() >= 0.9 and cut == 0.8  # the lowest cut keeping precision >= 0.9
    assert precision_threshold(scores, labels, 1.01) == best_threshold(scores, labels)  # unreachable: max F1
