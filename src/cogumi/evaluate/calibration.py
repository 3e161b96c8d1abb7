"""Temperature scaling (Guo et al., 2017) of multiple-choice answer confidence: fit, ECE, reliability plot."""

import math

import numpy as np


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _ragged(scores) -> list[np.ndarray]:
    return [np.asarray(s, dtype=np.float64) for s in scores]


def nll(scores, labels, temperature: float = 1.0) -> float:
    """Mean negative log-probability of the right option (items may have different option counts)."""
    total = 0.0
    for s, y in zip(_ragged(scores), labels):
        z = s / temperature
        total += -(z[y] - (z.max() + math.log(np.exp(z - z.max()).sum())))
    return float(total / max(len(labels), 1))


def fit_temperature(scores, labels, low: float = 0.05, high: float = 200.0, steps: int = 80) -> float:
    """The T minimising held-out NLL: a log-spaced grid, then golden-section refinement (NLL is unimodal in log T).

    The grid reaches 200: summed loglikelihoods of long options (HellaSwag endings) differ by tens of
    nats, and on the embedded student a grid ending at 20 stopped at its edge (T=20.0, ECE 0.075)."""
    grid = np.exp(np.linspace(math.log(low), math.log(high), steps))
    losses = [nll(scores, labels, t) for t in grid]
    best = int(np.argmin(losses))
    a, b = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, steps - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if nll(scores, labels, math.exp(c)) < nll(scores, labels, math.exp(d)):
            b = d
        else:
            a = c
    return float(math.exp((a + b) / 2))


def confidences(scores, labels, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of the chosen option, whether it is right) per item."""
    conf, correct = [], []
    for s, y in zip(_ragged(scores), labels):
        p = softmax(s, temperature)
        conf.append(p.max())
        correct.append(float(p.argmax() == y))
    return np.array(conf), np.array(correct)


def reliability_bins(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if mask.any():
            rows.append({"low": float(lo), "high": float(hi), "count": int(mask.sum()),
                         "confidence": float(conf[mask].mean()), "accuracy": float(correct[mask].mean())})
    return rows


def expected_calibration_error(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Σ_bins (n_b / n) · |accuracy_b − confidence_b| over equal-width confidence bins."""
    n = len(conf)
    return float(sum(r["count"] / n * abs(r["accuracy"] - r["confidence"]) for r in reliability_bins(conf, correct, bins)))


def equal_mass_calibration_error(conf, correct, bins: int = 15) -> float:
    """ECE over `bins` equal-count bins: a check on the equal-width ECE, whose 10 bins leave most items in
    two or three bins when the confidences crowd together (a coarse binning can hide miscalibration)."""
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=float)
    order = np.argsort(conf, kind="stable")
    return float(sum(len(part) / len(conf) * abs(correct[part].mean() - conf[part].mean())
                     for part in np.array_split(order, min(bins, len(conf))) if len(part)))


def ece_interval(conf: np.ndarray, correct: np.ndarray, bins: int = 10, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the ECE (items resampled with their confidence and outcome)."""
    from scipy import stats as scipy_stats

    if len(conf) < 2:
        value = expected_calibration_error(conf, correct, bins)
        return value, value
    result = scipy_stats.bootstrap((conf, correct), lambda c, y: expected_calibration_error(c, y, bins),
                                   paired=True, vectorized=False, n_resamples=1000, method="percentile",
                                   confidence_level=confidence, rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def plot_reliability(path, before: list[dict], after: list[dict], ece_before: float, ece_after: float,
                     temperature: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for rows, label, marker in ((before, f"T=1 (ECE {ece_before:.3f})", "o"),
                                (after, f"T={temperature:.2f} (ECE {ece_after:.3f})", "s")):
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker=marker, label=label)
    ax.set(xlabel="confidence of the chosen answer", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="Reliability on the held-out half")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
