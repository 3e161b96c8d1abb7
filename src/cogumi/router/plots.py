"""The router's PNGs: domain confusion matrix, confidence reliability, routing quality vs cost."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
import numpy as np  # noqa: E402

from cogumi.evaluate.calibration import reliability_bins  # noqa: E402


def confusion_png(path, matrix: np.ndarray, labels: list[str], title: str) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(6, 5.5))
    ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=ax, cmap="Blues", colorbar=False,
                                                               xticks_rotation=30)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_png(path, curves: dict[str, np.ndarray], correct: np.ndarray, title: str) -> None:
    """One reliability line per calibrator (label -> confidences), with the diagonal."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for label, conf in curves.items():
        rows = reliability_bins(np.asarray(conf), np.asarray(correct))
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=label)
    ax.set(xlabel="predicted P(correct)", ylabel="observed accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def routing_png(path, curve: list[dict], random_line: tuple, oracle: list[dict], weak: float, strong: float,
                operating: dict | None, title: str) -> None:
    """Quality vs share of calls to the strong route: router, random, oracle, and both routes alone."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([p["strong_share"] for p in curve], [p["quality"] for p in curve], marker=".", label="router (threshold)")
    ax.plot(*random_line, "k:", label="random routing")
    ax.plot([p["strong_share"] for p in oracle], [p["quality"] for p in oracle], "g--", label="oracle")
    ax.axhline(weak, color="grey", lw=0.8)
    ax.axhline(strong, color="grey", lw=0.8)
    if operating:
        ax.plot([operating["strong_share"]], [operating["quality"]], "r*", ms=12,
                label=f"threshold {operating['threshold']:.2f}")
    ax.set(xlabel="share of queries sent to the strong route", ylabel="accuracy", xlim=(0, 1), title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
