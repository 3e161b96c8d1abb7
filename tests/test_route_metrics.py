"""RouteLLM's metrics on planted data: a confidence that finds the weak route's errors beats random."""

import numpy as np
import pytest

from cogumi.router import routing_metrics
from cogumi.router.route_eval import evaluate_routing


def _planted(n=400, seed=0, informative=True):
    rng = np.random.default_rng(seed)
    weak = (rng.random(n) < 0.5).astype(float)
    strong = np.ones(n)
    noise = rng.normal(0, 0.3, n)
    confidence = np.clip(0.5 + (weak - 0.5) * 0.6 + noise, 0, 1) if informative else rng.random(n)
    return confidence, weak, strong


def test_curve_ends_at_the_two_routes_alone():
    confidence, weak, strong = _planted()
    share, accuracy = routing_metrics.router_curve(confidence, weak, strong)
    assert share[0] == 0 and share[-1] == 1
    assert accuracy[0] == pytest.approx(weak.mean()) and accuracy[-1] == pytest.approx(strong.mean())


def test_informative_confidence_beats_random_routing():
    confidence, weak, strong = _planted()
    informed = routing_metrics.apgr_interval(confidence, weak, strong, resamples=200)
    random = routing_metrics.random_apgr(weak, strong, draws=100)
    assert random["value"] == pytest.approx(0.5, abs=0.05)
    assert informed["low"] > random["high"]


def test_uninformative_confidence_is_no_better_than_random():
    confidence, weak, strong = _planted(informative=False)
    value = routing_metrics.apgr(confidence, weak, strong)
    assert value == pytest.approx(0.5, abs=0.1)


def test_cpt_of_a_perfect_router_is_the_share_of_errors_times_the_recovered_fraction():
    weak = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], float)
    strong = np.ones(10)
    share, accuracy = routing_metrics.router_curve(weak, weak, strong)  # confidence = the truth
    assert routing_metrics.cpt(share, accuracy, weak.mean(), 1.0, 0.5) == pytest.approx(0.1)
    assert routing_metrics.cpt(share, accuracy, weak.mean(), 1.0, 1.0) == pytest.approx(0.2)


def test_no_gap_gives_no_apgr_rather_than_a_division_by_zero():
    weak = np.ones(20)
    assert routing_metrics.apgr_interval(np.linspace(0, 1, 20), weak, weak)["value"] is None


def test_threshold_sets_the_share_and_the_utility():
    confidence, weak, strong = _planted()
    seconds = np.full(len(weak), 0.1)
    never = evaluate_routing(confidence, weak, strong, seconds, seconds, 0.0, 0.2, 0)
    always = evaluate_routing(confidence, weak, strong, seconds, seconds, 1.01, 0.2, 0)
    assert never["operating_point"]["strong_share"] == 0 and always["operating_point"]["strong_share"] == 1
    assert always["utility"] == pytest.approx(1.0 - 0.2)
    assert always["operating_point"]["mean_seconds"] == pytest.approx(0.2)


def test_paired_difference_vs_random_is_significant_only_for_an_informative_confidence():
    confidence, weak, strong = _planted()
    informed = routing_metrics.apgr_difference_vs_random(confidence, weak, strong, resamples=200)
    assert informed["low"] > 0 and informed["significant"]
    noise, weak, strong = _planted(informative=False)
    uninformed = routing_metrics.apgr_difference_vs_random(noise, weak, strong, resamples=200)
    assert uninformed["low"] < 0 < uninformed["high"] and not uninformed["significant"]
