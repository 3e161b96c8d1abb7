"""Intervals and paired tests: the numbers every gate and report decides by."""

import numpy as np
import pytest

from cogumi.stats import compare_paired, mean_estimate, proportion


def test_wilson_interval_matches_the_textbook_value():
    # Wilson 95% for 8/10: [0.4902, 0.9433] (Newcombe 1998, table I style values).
    est = proportion(8, 10)
    assert est.value == pytest.approx(0.8)
    assert est.low == pytest.approx(0.4902, abs=1e-3) and est.high == pytest.approx(0.9433, abs=1e-3)
    assert est.n == 10 and est.method == "wilson"
    assert str(est) == "0.800 [0.490, 0.943] n=10"


def test_interval_narrows_with_more_items_and_stays_inside_0_1():
    small, large = proportion(2, 10), proportion(200, 1000)
    assert large.high - large.low < small.high - small.low
    assert 0 <= proportion(0, 20).low <= proportion(0, 20).high < 0.2
    assert proportion(20, 20).high == pytest.approx(1.0)


def test_mean_estimate_uses_wilson_for_binary_and_bootstrap_otherwise():
    assert mean_estimate([1, 0, 1, 1]).method == "wilson"
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 1.0, size=400)
    est = mean_estimate(values)
    assert est.method == "bootstrap" and est.low < 2.0 < est.high
    assert est.low < est.value < est.high
    assert mean_estimate([]).n == 0
    # Per-window KL of a model against itself is 0 on every window: continuous values, no Wilson [0, 0.19].
    assert mean_estimate([0.0] * 16).high > 0.1
    same = mean_estimate([0.0] * 16, binary=False)
    assert (same.low, same.value, same.high, same.method) == (0.0, 0.0, 0.0, "bootstrap")


def test_same_model_twice_is_not_a_difference():
    scores = [1, 0, 1, 1, 0] * 40
    result = compare_paired(scores, scores)
    assert result.difference == 0 and result.p_value == 1.0
    assert not result.significant_gain and not result.significant_drop


def test_mcnemar_sees_a_real_drop_on_paired_items():
    rng = np.random.default_rng(1)
    reference = (rng.random(200) < 0.6).astype(float)
    candidate = reference.copy()
    # the candidate loses 30 items the reference got right and wins 5
    right = np.flatnonzero(reference == 1)[:30]
    wrong = np.flatnonzero(reference == 0)[:5]
    candidate[right], candidate[wrong] = 0, 1
    result = compare_paired(candidate, reference)
    assert result.method == "mcnemar-exact" and result.n == 200
    assert result.difference == pytest.approx(-25 / 200)
    assert result.significant_drop and not result.significant_gain
    assert result.high < 0 and result.p_value < 0.001


def test_a_few_discordant_items_are_not_significant():
    reference = np.array([1.0] * 50 + [0.0] * 50)
    candidate = reference.copy()
    candidate[:2] = 0  # two losses, one win: noise
    candidate[60] = 1
    result = compare_paired(candidate, reference)
    assert not result.significant_drop and result.p_value > 0.5


def test_continuous_scores_use_a_permutation_test():
    rng = np.random.default_rng(2)
    reference = rng.random(150)
    better = compare_paired(reference + 0.05 + rng.normal(0, 0.02, 150), reference)
    assert better.method == "paired-permutation" and better.significant_gain
    noise = compare_paired(reference + rng.normal(0, 0.02, 150), reference)
    assert not noise.significant_gain and not noise.significant_drop


def test_unaligned_scores_are_refused():
    with pytest.raises(ValueError, match="same items"):
        compare_paired([1, 0, 1], [1, 0])


def test_ratio_of_sums_pairs_the_chunks_and_its_interval_reflects_their_spread():
    from cogumi.stats import ratio_of_sums

    rng = np.random.default_rng(1)
    slow = rng.uniform(8, 12, 30)  # the same chunks of work, timed on both sides
    steady = ratio_of_sums(slow * 3.0, slow)
    assert steady.value == pytest.approx(3.0) and steady.low == pytest.approx(3.0) and steady.n == 30
    noisy = ratio_of_sums(slow * rng.uniform(2.4, 3.6, 30), slow)
    assert noisy.low < noisy.value < noisy.high and 2.6 < noisy.low and noisy.high < 3.4
    # three workloads of very different ratios timed in rounds: the mix is fixed, only the rounds vary
    sets = np.repeat(["a", "b", "c"], 10)
    mixed = ratio_of_sums(slow * np.repeat([2.0, 3.0, 5.0], 10) * rng.uniform(0.95, 1.05, 30), slow)
    stratified = ratio_of_sums(slow * np.repeat([2.0, 3.0, 5.0], 10) * rng.uniform(0.95, 1.05, 30), slow, strata=sets)
    assert stratified.high - stratified.low < (mixed.high - mixed.low) / 3
    with pytest.raises(ValueError, match="same pairs"):
        ratio_of_sums([1.0, 2.0], [1.0])
