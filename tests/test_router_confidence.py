"""Confidence from token logprobs: features, the three calibrators, heads that save and load exactly."""

import math

import numpy as np
import pytest

from cogumi.router import confidence
from cogumi.router.heads import Head, train_logistic, train_mlp


def _mc_answers(n=400, seed=0):
    """MC answers whose correctness follows an overconfident option distribution (true T = 2.5)."""
    rng = np.random.default_rng(seed)
    answers = []
    for _ in range(n):
        scores = rng.normal(0, 3, 4)
        logprobs = scores - np.log(np.exp(scores).sum())
        chosen = int(logprobs.argmax())
        truth = np.exp(scores / 2.5) / np.exp(scores / 2.5).sum()
        gold = int(rng.choice(4, p=truth))
        answers.append({"option_logprobs": logprobs.tolist(), "gold": gold, "correct": int(chosen == gold),
                        "token_logprobs": [float(logprobs[chosen])],
                        "top_logprobs": [{c: float(v) for c, v in zip("ABCD", logprobs)}]})
    return answers


def test_features_of_a_single_mc_token():
    features = confidence.answer_features([math.log(0.6)], [{"A": math.log(0.6), "B": math.log(0.2),
                                                             "C": math.log(0.2)}])
    assert features[0] == features[1] == pytest.approx(math.log(0.6))
    assert features[4] == pytest.approx(0.6)  # the option probability
    assert features[3] > 0  # entropy over the options


@pytest.mark.parametrize("kind", confidence.KINDS)
def test_each_calibrator_lowers_ece_on_held_out_answers(kind):
    fit, held = _mc_answers(600, 0), _mc_answers(600, 1)
    raw = np.array([confidence.answer_features(a["token_logprobs"], a["top_logprobs"])[4] for a in held])
    correct = np.array([a["correct"] for a in held])
    calibrated = confidence.predict(confidence.fit(kind, fit), held)
    assert ((0 <= calibrated) & (calibrated <= 1)).all()
    ece_raw = confidence.quality(raw, correct, resamples=100)["ece"]["value"]
    ece_cal = confidence.quality(calibrated, correct, resamples=100)["ece"]["value"]
    assert ece_cal < ece_raw / 2


def test_choose_keeps_the_lowest_brier_and_reports_intervals():
    answers = _mc_answers(300)
    chosen, briers = confidence.choose(answers)
    assert chosen.kind == min(briers, key=briers.get)
    q = confidence.quality(confidence.predict(chosen, answers), np.array([a["correct"] for a in answers]),
                          resamples=200)
    assert q["auroc"]["low"] <= q["auroc"]["value"] <= q["auroc"]["high"] and q["auroc"]["value"] > 0.6


def test_calibrator_round_trips_through_json():
    import json

    calibrator = confidence.fit("platt", _mc_answers(200))
    again = confidence.Calibrator(json.loads(json.dumps(calibrator.to_dict())))
    a = _mc_answers(5, 3)[0]
    assert again.probability(a["token_logprobs"], a["top_logprobs"]) == calibrator.probability(
        a["token_logprobs"], a["top_logprobs"])


@pytest.mark.parametrize("trainer", [train_logistic, train_mlp])
def test_heads_learn_and_save_exactly(trainer, tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (3, 16))
    y = rng.integers(0, 3, 300)
    x = (centres[y] + rng.normal(0, 0.3, (300, 16))).astype(np.float32)
    head = trainer(x, y, 3, seed=0) if trainer is train_logistic else trainer(x, y, 3, epochs=30, seed=0)
    assert (head.probabilities(x).argmax(1) == y).mean() > 0.95
    head.save(tmp_path / "head.npz")
    again = Head.load(tmp_path / "head.npz")
    assert again.kind == head.kind
    np.testing.assert_allclose(again.probabilities(x), head.probabilities(x), rtol=1e-6)


def test_no_logprobs_gives_the_base_rate_and_generation_logprobs_work_without_alternatives():
    answers = _mc_answers(300)
    calibrator = confidence.fit("isotonic", answers)
    assert calibrator.probability([]) == pytest.approx(np.mean([a["correct"] for a in answers]))
    sure, unsure = calibrator.probability([-0.01, -0.02, -0.01]), calibrator.probability([-3.0, -2.5, -4.0])
    assert 0.0 <= unsure <= sure <= 1.0


def test_a_binary_logistic_head_separates_its_two_classes():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    x = (np.where(y[:, None] == 1, 1.0, -1.0) + rng.normal(0, 0.5, (200, 8))).astype(np.float32)
    p = train_logistic(x, y, 2).probabilities(x)[:, 1]
    assert (p[y == 1] > 0.5).mean() > 0.9 and (p[y == 0] < 0.5).mean() > 0.9


def test_features_of_a_multiple_choice_answer_use_every_option():
    options = {"logprobs": [math.log(0.5), math.log(0.3), math.log(0.2)], "tokens": [1, 10, 10]}
    features = dict(zip(confidence.FEATURES, confidence.answer_features([-0.1, -0.3, -2.0], options=options)))
    assert features["chosen_share"] == pytest.approx(0.5)
    assert features["margin"] == pytest.approx(0.2)
    assert features["min_logprob"] == pytest.approx(-2.0) and features["log_tokens"] == pytest.approx(math.log(3))
    # per token the one-token first option is less likely than the long ones: acc_norm disagrees
    assert features["normalised_share"] < 1 / 3  # below uniform over the three options


def test_a_platt_calibrator_fitted_on_the_first_five_features_still_scores():
    old = confidence.Calibrator({"kind": "platt", "mean": [0.0] * 5, "scale": [1.0] * 5,
                                 "coef": [0.0, 0.0, 0.0, 0.0, 4.0], "intercept": -2.0})
    sure = old.probability([-0.1], [{"A": -0.1, "B": -5.0}])
    unsure = old.probability([-0.7], [{"A": -0.7, "B": -0.7}])
    assert sure > 0.8 > unsure


def test_equal_mass_ece_sees_miscalibration_inside_one_wide_bin():
    # confidences 0.41-0.49 (one equal-width bin); the low half is right 20 % of the time, the high half
    # 70 %: the bin's averages agree (ECE ~0) while 15 equal-count bins see the 25-point gaps
    rng = np.random.default_rng(0)
    conf = np.sort(rng.uniform(0.41, 0.49, 4000))
    correct = np.concatenate([rng.random(2000) < 0.2, rng.random(2000) < 0.7]).astype(float)
    q = confidence.quality(conf, correct, resamples=50)
    assert q["ece"]["value"] < 0.03
    assert q["ece_equal_mass"]["value"] > 0.2


def test_ece_interval_resamples_items():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.2, 0.8, 3000)
    correct = (rng.random(3000) < conf).astype(float)  # calibrated by construction
    small = confidence.quality(conf[:300], correct[:300], resamples=200)["ece"]
    large = confidence.quality(conf, correct, resamples=200)["ece"]
    assert large["n"] == 3000 and large["low"] <= large["value"] <= large["high"]
    assert large["high"] - large["low"] < small["high"] - small["low"]  # ten times the items: a narrower interval


def test_held_out_calibration_items_skip_the_fit_items(monkeypatch):
    from cogumi.router import mc_answers

    pools = {"val": [{"id": f"v{i}"} for i in range(3)], "train": [{"id": f"t{i}"} for i in range(5)]}
    monkeypatch.setattr(mc_answers, "mc_items", lambda sets, split, limit, v, t: pools[split][:limit])
    fit = mc_answers.mc_items(["x"], "train", 2, 0.15, 0.15)
    held = mc_answers.held_out_items(["x"], ["val", "train"], 5, {i["id"] for i in fit}, 0.15, 0.15)
    assert [i["id"] for i in held] == ["v0", "v1", "v2", "t2", "t3"]
