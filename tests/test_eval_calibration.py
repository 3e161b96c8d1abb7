"""Temperature scaling: ECE drops on a synthetic miscalibrated set, and T recovers the planted temperature."""

import numpy as np
import pytest

from cogumi.evaluate import calibration
from cogumi.evaluate.calibrate import calibrate


def _miscalibrated(n: int, true_temperature: float, seed: int = 0):
    """Scores whose softmax is overconfident: labels are drawn from softmax(scores / true_temperature)."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(0, 4, size=(n, 4))
    labels = [int(rng.choice(4, p=calibration.softmax(s, true_temperature))) for s in scores]
    return scores.tolist(), labels


def test_fitted_temperature_recovers_the_planted_one():
    scores, labels = _miscalibrated(4000, 3.0)
    assert calibration.fit_temperature(scores, labels) == pytest.approx(3.0, rel=0.15)


def test_ece_drops_after_scaling_on_held_out_items(tmp_path):
    scores, labels = _miscalibrated(2000, 3.0, seed=1)
    report = calibrate(scores, labels, bins=10)
    assert report["ece_before"] > 0.1
    assert report["ece_after"] < report["ece_before"] / 2
    assert report["nll_after"] < report["nll_before"]
    calibration.plot_reliability(tmp_path / "r.png", report["bins_before"], report["bins_after"],
                                 report["ece_before"], report["ece_after"], report["temperature"])
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_underconfident_scores_get_a_temperature_below_one():
    scores, labels = _miscalibrated(2000, 0.5, seed=2)
    assert calibration.fit_temperature(scores, labels) < 0.7


def test_ece_of_a_perfectly_calibrated_bin_is_zero():
    conf = np.array([0.8] * 10)
    correct = np.array([1.0] * 8 + [0.0] * 2)
    assert calibration.expected_calibration_error(conf, correct) == pytest.approx(0.0)


def test_items_may_have_different_option_counts():
    scores = [[0.0, 2.0], [1.0, 0.0, -1.0, 3.0]] * 10
    labels = [1, 3] * 10
    assert calibration.nll(scores, labels, 1.0) > calibration.nll(scores, labels, 0.5)
