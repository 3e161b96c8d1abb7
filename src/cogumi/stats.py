"""Uncertainty for every quality figure: intervals on one run, paired tests between two runs.

A figure without its item count and interval cannot decide anything (two point estimates side by
side are not a comparison), so every suite metric, gate check and routing figure goes through here.

- `proportion` / `mean_estimate`: a 95% interval on one run (Wilson for 0/1 scores, bootstrap else).
- `ratio_of_sums`: a ratio of paired totals (a speed-up over the same pieces of work).
- `compare_paired`: candidate vs reference on the *same items*: exact McNemar for 0/1 scores, a
  sign-flip permutation test otherwise; the interval is the bootstrap interval of the mean difference.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int
    method: str  # wilson | bootstrap | empty

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] n={self.n}"


@dataclass(frozen=True)
class PairedComparison:
    candidate: float  # mean score of the candidate on the paired items
    reference: float
    difference: float  # mean of candidate - reference
    low: float  # interval of the difference
    high: float
    p_value: float  # two-sided
    n: int
    method: str  # mcnemar-exact | paired-permutation | empty
    confidence: float = 0.95

    @property
    def significant_gain(self) -> bool:
        """Better beyond chance: the interval lies above zero and the test rejects equality."""
        return self.n > 0 and self.low > 0 and self.p_value < 1 - self.confidence

    @property
    def significant_drop(self) -> bool:
        return self.n > 0 and self.high < 0 and self.p_value < 1 - self.confidence

    def to_dict(self) -> dict:
        record = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        record.update(significant_gain=self.significant_gain, significant_drop=self.significant_drop)
        return record

    def __str__(self) -> str:
        return (f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] p={self.p_value:.3g} n={self.n} "
                f"({self.candidate:.3f} vs {self.reference:.3f})")


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all())


def proportion(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Share of successes with its Wilson score interval (sound at small n and near 0 or 1)."""
    if n <= 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "empty")
    ci = scipy_stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Estimate(successes / n, float(ci.low), float(ci.high), int(n), "wilson")


def _bootstrap_interval(data: tuple, statistic, confidence: float, seed: int, paired: bool) -> tuple[float, float]:
    result = scipy_stats.bootstrap(data, statistic, n_resamples=N_RESAMPLES, confidence_level=confidence,
                                   method="percentile", paired=paired, vectorized=True, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_estimate(values: Sequence[float], confidence: float = 0.95, seed: int = 0,
                  binary: bool | None = None) -> Estimate:
    """Mean with a 95% interval: Wilson when every value is 0/1, a percentile bootstrap otherwise.

    `binary=False` says the values are continuous (e.g. per-window means) even when all happen to be
    0 or 1: a model compared with itself has KL 0 on every window, which is no 0-of-n proportion."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "empty")
    if binary if binary is not None else _is_binary(array):
        return proportion(int(array.sum()), int(array.size), confidence)
    if np.ptp(array) == 0:  # every value equal: the bootstrap has nothing to resample
        return Estimate(float(array[0]), float(array[0]), float(array[0]), int(array.size), "bootstrap")
    low, high = _bootstrap_interval((array,), lambda x, axis: np.mean(x, axis=axis), confidence, seed, paired=False)
    return Estimate(float(array.mean()), low, high, int(array.size), "bootstrap")


def ratio_of_sums(numerators: Sequence[float], denominators: Sequence[float], strata: Sequence | None = None,
                  confidence: float = 0.95, seed: int = 0) -> Estimate:
    """sum(numerators) / sum(denominators) with a paired percentile-bootstrap interval: e.g. the baseline's
    over the candidate's seconds on the same pieces of work, timed side by side. With `strata` (a label per
    pair), pairs are resampled within their stratum: a fixed mix of workloads (three task sets) timed in
    rounds varies by the rounds' noise, not by which sets happened to be drawn."""
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if num.shape != den.shape:
        raise ValueError(f"a paired ratio needs the same pairs: {num.size} numerators vs {den.size} denominators")
    if num.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "empty")
    labels = np.zeros(num.size, dtype=int) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    num_sums, den_sums = np.zeros(N_RESAMPLES), np.zeros(N_RESAMPLES)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        draw = members[rng.integers(0, members.size, (N_RESAMPLES, members.size))]
        num_sums += num[draw].sum(axis=1)
        den_sums += den[draw].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(num_sums / den_sums, [tail, 100 - tail])
    return Estimate(float(num.sum() / den.sum()), float(low), float(high), int(num.size), "bootstrap")


def compare_paired(candidate: Sequence[float], reference: Sequence[float], confidence: float = 0.95,
                   seed: int = 0) -> PairedComparison:
    """Candidate vs reference scored on the same items, in the same order (the caller aligns them)."""
    cand, ref = np.asarray(candidate, dtype=float), np.asarray(reference, dtype=float)
    if cand.shape != ref.shape:
        raise ValueError(f"paired scores need the same items: {cand.size} candidate vs {ref.size} reference scores")
    n = int(cand.size)
    if n == 0:
        return PairedComparison(math.nan, math.nan, math.nan, math.nan, math.nan, 1.0, 0, "empty", confidence)
    diff = cand - ref
    mean_diff = float(diff.mean())
    if np.ptp(diff) == 0:  # identical differences everywhere (e.g. the same model twice)
        low = high = mean_diff
        p_value = 1.0 if mean_diff == 0 else 0.0
    else:
        low, high = _bootstrap_interval((diff,), lambda x, axis: np.mean(x, axis=axis), confidence, seed,
                                        paired=False)
        p_value = _paired_p_value(cand, ref, diff, seed)
    method = "mcnemar-exact" if _is_binary(cand) and _is_binary(ref) else "paired-permutation"
    return PairedComparison(float(cand.mean()), float(ref.mean()), mean_diff, low, high, float(p_value), n, method,
                            confidence)


def _paired_p_value(cand: np.ndarray, ref: np.ndarray, diff: np.ndarray, seed: int) -> float:
    if _is_binary(cand) and _is_binary(ref):
        # McNemar: only the discordant items carry information; exact binomial test on them.
        gains, losses = int(((cand == 1) & (ref == 0)).sum()), int(((cand == 0) & (ref == 1)).sum())
        return 1.0 if gains + losses == 0 else float(scipy_stats.binomtest(gains, gains + losses, 0.5).pvalue)
    # Sign-flip permutation test on the per-item differences (the paired null: either order is as likely).
    result = scipy_stats.permutation_test((diff,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                          vectorized=True, n_resamples=N_RESAMPLES, rng=np.random.default_rng(seed))
    return float(result.pvalue)
