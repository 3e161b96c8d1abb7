"""Intervals for suite figures and paired comparisons of two suite runs, built on `cogumi.stats`.

Per task: the primary metric's mean with its 95% interval (Wilson for 0/1 scores). `suite/primary_mean`
is the mean of the task means, so its interval comes from a bootstrap that resamples each task's items
separately (a pooled bootstrap would weight tasks by their item counts).
"""

import math

import numpy as np
from scipy import stats as scipy_stats

from cogumi.stats import N_RESAMPLES, Estimate, PairedComparison, compare_paired, mean_estimate

SUITE_MEAN = "suite/primary_mean"


def metric_key(task: str, primary: str) -> str:
    return f"{task}/{primary}"


def task_estimates(item_scores: dict[str, dict[str, float]], primary: dict[str, str]) -> dict[str, Estimate]:
    """`<task>/<primary metric>` -> Estimate over the task's items, plus `suite/primary_mean`."""
    found = {metric_key(task, primary[task]): mean_estimate(list(scores.values()))
             for task, scores in item_scores.items() if scores}
    per_task = [np.fromiter(scores.values(), float) for scores in item_scores.values() if scores]
    if per_task:
        found[SUITE_MEAN] = _mean_of_means(per_task)
    return found


def _mean_of_means(per_task: list[np.ndarray], confidence: float = 0.95, seed: int = 0) -> Estimate:
    value = float(np.mean([a.mean() for a in per_task]))
    n = int(sum(a.size for a in per_task))
    if all(np.ptp(a) == 0 for a in per_task):
        return Estimate(value, value, value, n, "stratified-bootstrap")
    low, high = _stratified_interval(per_task, confidence, seed)
    return Estimate(value, low, high, n, "stratified-bootstrap")


def _stratified_interval(per_task: list[np.ndarray], confidence: float, seed: int) -> tuple[float, float]:
    # Tasks of one item cannot be resampled by scipy; their mean is fixed in every resample.
    fixed = [a.mean() for a in per_task if a.size < 2]
    samples = [a for a in per_task if a.size >= 2]
    count = len(per_task)
    if not samples:
        value = sum(fixed) / count
        return value, value

    def statistic(*xs, axis):
        return (sum(x.mean(axis=axis) for x in xs) + sum(fixed)) / count

    result = scipy_stats.bootstrap(samples, statistic, n_resamples=N_RESAMPLES, confidence_level=confidence,
                                   method="percentile", paired=False, vectorized=True,
                                   rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def aligned(candidate: dict[str, float], reference: dict[str, float]) -> tuple[list[float], list[float]]:
    """Scores of the items both runs scored, in one order (pairing is by item id)."""
    shared = sorted(set(candidate) & set(reference))
    return [candidate[i] for i in shared], [reference[i] for i in shared]


def paired(candidate: dict[str, dict[str, float]], reference: dict[str, dict[str, float]],
           primary: dict[str, str]) -> dict[str, PairedComparison]:
    """Per `<task>/<primary>` and for `suite/primary_mean`: candidate vs reference on their shared items."""
    found, diffs, cand_means, ref_means = {}, [], [], []
    for task in sorted(set(candidate) & set(reference)):
        cand, ref = aligned(candidate[task], reference[task])
        if not cand:
            continue
        found[metric_key(task, primary[task])] = compare_paired(cand, ref)
        diffs.append(np.asarray(cand) - np.asarray(ref))
        cand_means.append(float(np.mean(cand)))
        ref_means.append(float(np.mean(ref)))
    if diffs:
        found[SUITE_MEAN] = _paired_mean_of_means(diffs, cand_means, ref_means)
    return found


def _paired_mean_of_means(diffs: list[np.ndarray], cand_means: list[float], ref_means: list[float],
                          confidence: float = 0.95, seed: int = 0) -> PairedComparison:
    difference = float(np.mean([d.mean() for d in diffs]))
    n = int(sum(d.size for d in diffs))
    if all(np.ptp(d) == 0 for d in diffs) and len({float(d[0]) for d in diffs}) == 1:
        low = high = difference
        p_value = 1.0 if difference == 0 else 0.0
    else:
        low, high = _stratified_interval(diffs, confidence, seed)
        # Sign-flip test of the weighted mean: under the paired null either order of each item is as likely.
        weights = np.concatenate([np.full(d.size, 1.0 / (len(diffs) * d.size)) for d in diffs])
        result = scipy_stats.permutation_test((np.concatenate(diffs),), lambda x, axis: np.sum(x * weights, axis=axis),
                                              permutation_type="samples", vectorized=True, n_resamples=N_RESAMPLES,
                                              rng=np.random.default_rng(seed))
        p_value = float(result.pvalue)
    return PairedComparison(float(np.mean(cand_means)), float(np.mean(ref_means)), difference, low, high,
                            p_value if not math.isnan(p_value) else 1.0, n, "stratified-paired", confidence)
