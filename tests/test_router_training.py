"""Router and detector training helpers on synthetic vectors: label cleaning and cross-fitted dev scores."""

import json

import numpy as np

from cogumi.router.domain_data import HANDWRITTEN_HELDOUT, handwritten_queries
from cogumi.router.escalation_data import evaluation_turns
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


def test_heldout_sets_are_large_varied_and_sourced():
    queries = handwritten_queries(HANDWRITTEN_HELDOUT)
    assert len(queries) >= 100
    assert {q.domain for q in queries} == {"reasoning", "math", "code", "automation", "general"}
    rows = [json.loads(line) for line in HANDWRITTEN_HELDOUT.read_text().splitlines() if line]
    assert all(r.get("source") for r in rows)
    fourth = [t for t in evaluation_turns() if t.source["written"] == "fourth"]
    assert len(fourth) >= 100 and 0.4 <= sum(t.label for t in fourth) / len(fourth) <= 0.6
