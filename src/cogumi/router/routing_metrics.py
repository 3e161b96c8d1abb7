"""RouteLLM's routing metrics (lm-sys/RouteLLM, routellm/evals/evaluate.py), on per-item correctness.

A weak route (the base) and a strong one (modifier or teacher) both answered every item. A router
sends the items it is least confident about to the strong route; sweeping the cut traces accuracy
against the share of strong calls. PGR = (accuracy − weak) / (strong − weak); APGR = the area under
that curve over strong-call share 0..1, normalised the same way (random routing: 0.5); CPT(x) = the
smallest strong-call share whose accuracy recovers x of the gap. Oracle: strong only where it fixes
an error of the weak route.
"""

import numpy as np

from cogumi.stats import proportion

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz


def router_curve(confidence, weak, strong) -> tuple[np.ndarray, np.ndarray]:
    """(strong share, accuracy) for every cut: the k least confident items go to the strong route."""
    confidence, weak, strong = (np.asarray(a, dtype=float) for a in (confidence, weak, strong))
    order = np.argsort(confidence, kind="stable")
    n = len(order)
    gained = np.concatenate([[0.0], np.cumsum(strong[order] - weak[order])])
    return np.arange(n + 1) / n, (weak.sum() + gained) / n


def apgr(confidence, weak, strong) -> float:
    share, accuracy = router_curve(confidence, weak, strong)
    gap = np.mean(strong) - np.mean(weak)
    if gap <= 0:
        return float("nan")  # no gap to recover: the strong route is not better on these items
    return float((_trapezoid(accuracy, share) - np.mean(weak)) / gap)


def cpt(share: np.ndarray, accuracy: np.ndarray, weak: float, strong: float, recovered: float) -> float | None:
    """Smallest strong-call share reaching weak + recovered·(strong − weak) accuracy (interpolated)."""
    if strong <= weak:
        return None
    target = weak + recovered * (strong - weak)
    reached = np.nonzero(accuracy >= target - 1e-12)[0]
    if not len(reached):
        return None
    i = int(reached[0])
    if i == 0:
        return 0.0
    a0, a1 = accuracy[i - 1], accuracy[i]
    return float(share[i - 1] + (share[i] - share[i - 1]) * (target - a0) / (a1 - a0))


def oracle_curve(weak, strong, points: int = 21) -> list[dict]:
    weak, strong = np.asarray(weak, float), np.asarray(strong, float)
    fixable = float(((weak == 0) & (strong == 1)).sum())
    n = len(weak)
    return [{"strong_share": s, "quality": float((weak.sum() + min(fixable, s * n)) / n)}
            for s in np.linspace(0, 1, points)]


def at_threshold(threshold: float, confidence, weak, strong, weak_seconds, strong_seconds) -> dict:
    """The balanced policy at one threshold: confidence >= threshold keeps the base's answer."""
    confidence = np.asarray(confidence, float)
    to_strong = confidence < threshold
    correct = np.where(to_strong, strong, weak)
    # the base always answers first (its logits give the confidence); escalated items pay both
    seconds = np.asarray(weak_seconds, float) + np.where(to_strong, np.asarray(strong_seconds, float), 0.0)
    quality = proportion(int(correct.sum()), len(correct))
    return {"threshold": float(threshold), "strong_share": float(to_strong.mean()), "quality": quality.value,
            "quality_interval": quality.to_dict(), "mean_seconds": float(seconds.mean())}


def apgr_interval(confidence, weak, strong, seed: int = 0, resamples: int = 1000) -> dict:
    """APGR and its 95 % percentile-bootstrap interval over items (scipy)."""
    from scipy.stats import bootstrap

    arrays = tuple(np.asarray(a, dtype=float) for a in (confidence, weak, strong))
    value = apgr(*arrays)
    if np.isnan(value):
        return {"value": None, "low": None, "high": None, "n": len(arrays[0]),
                "reason": "the strong route is not more accurate than the base on these items"}
    result = bootstrap(arrays, apgr, paired=True, vectorized=False, n_resamples=resamples, method="percentile",
                       rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {"value": round(value, 4), "low": round(float(low), 4), "high": round(float(high), 4), "n": len(arrays[0])}


def random_apgr(weak, strong, seed: int = 0, draws: int = 200) -> dict:
    """Random routing's APGR (0.5 in expectation), from random confidences, with its 2.5/97.5 percentiles."""
    rng = np.random.default_rng(seed)
    values = np.array([apgr(rng.random(len(weak)), weak, strong) for _ in range(draws)])
    if np.isnan(values).all():
        return {"value": None, "low": None, "high": None}
    return {"value": round(float(np.nanmean(values)), 4), "low": round(float(np.nanpercentile(values, 2.5)), 4),
            "high": round(float(np.nanpercentile(values, 97.5)), 4)}


def apgr_difference_vs_random(confidence, weak, strong, seed: int = 0, resamples: int = 1000) -> dict:
    """Router APGR − random routing's APGR on the same items, with a paired 95 % bootstrap interval.

    Each resample draws items with replacement and scores both routers on those same items (random
    routing: fresh random confidences), so the interval is of the difference itself, not of two
    separate intervals. Random routing's expected APGR is exactly 0.5 on any items (its expected curve
    is the straight line from the base's accuracy to the strong route's).
    """
    confidence, weak, strong = (np.asarray(a, dtype=float) for a in (confidence, weak, strong))
    rng = np.random.default_rng(seed)
    value = apgr(confidence, weak, strong) - apgr(rng.random(len(weak)), weak, strong)
    differences = []
    for _ in range(resamples):
        rows = rng.integers(0, len(weak), len(weak))
        router = apgr(confidence[rows], weak[rows], strong[rows])
        if not np.isnan(router):
            differences.append(router - apgr(rng.random(len(rows)), weak[rows], strong[rows]))
    if np.isnan(value) or not differences:
        return {"value": None, "low": None, "high": None, "n": len(weak)}
    low, high = np.percentile(differences, [2.5, 97.5])
    return {"value": round(float(value), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "n": len(weak), "resamples": len(differences), "significant": bool(low > 0)}
