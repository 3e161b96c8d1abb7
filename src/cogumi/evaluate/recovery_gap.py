"""`evaluate.py stage=recovery_gap`: how much of the perplexity gap that pruning opened recovery closes.

The same held-out windows are scored under three models: the dense model that was pruned, the
pruned model and the recovered one. Reported: each perplexity with a 95 % interval (windows
resampled), the paired per-window NLL difference of recovered vs pruned (a gain is significant only
if its interval excludes 0), and the share of the gap closed, (ppl_pruned − ppl_recovered) /
(ppl_pruned − ppl_dense), with a paired bootstrap interval. The measured sparsity of the pruned and
the recovered weights shows whether recovery kept the zeros. A PNG draws the three perplexities.
"""

import logging
import math

from cogumi.artifacts import Artifact
from cogumi.compress.sparsity import group_sparsity, layer_sparsity
from cogumi.data.text import read_documents
from cogumi.errors import ConfigError
from cogumi.models.fidelity import scoring_windows, window_nlls
from cogumi.stage import StageContext
from cogumi.stats import compare_paired, mean_estimate

log = logging.getLogger(__name__)

ROLES = ("dense", "pruned", "recovered")


def gap_closed(dense, pruned, recovered) -> float:
    """Share of the pruning's perplexity gap that recovery closed (1 = back to dense, 0 = no gain)."""
    ppl = {role: math.exp(sum(v) / len(v)) for role, v in zip(ROLES, (dense, pruned, recovered))}
    gap = ppl["pruned"] - ppl["dense"]
    return (ppl["pruned"] - ppl["recovered"]) / gap if gap > 0 else float("nan")


def gap_closed_interval(nlls: dict, confidence: float, seed: int) -> tuple[float, float]:
    """Paired bootstrap (scipy) over windows: every resample keeps each window's three scores together."""
    import numpy as np
    from scipy.stats import bootstrap

    def statistic(dense, pruned, recovered, axis=-1):
        ppl = [np.exp(np.mean(x, axis=axis)) for x in (dense, pruned, recovered)]
        return (ppl[1] - ppl[2]) / (ppl[1] - ppl[0])

    result = bootstrap(tuple(np.asarray(nlls[r]) for r in ROLES), statistic, paired=True, vectorized=True,
                       confidence_level=confidence, n_resamples=2000, method="percentile",
                       random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def run(ctx: StageContext, dense: str, pruned: str, recovered: str, text_file: str, window: int, max_windows: int,
        batch_size: int, confidence: float = 0.95, seed: int = 0) -> Artifact:
    from cogumi.models import load_causal_lm, load_tokenizer

    if window < 2 or max_windows < 2:
        raise ConfigError(f"stage.run.window={window}, max_windows={max_windows}: need ≥ 2 of each for an interval")
    models = {role: ctx.model_input(ref) for role, ref in zip(ROLES, (dense, pruned, recovered))}
    inputs = {**{role: m.identity for role, m in models.items()}, "text": text_file}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    windows = scoring_windows(load_tokenizer(models["dense"].source), read_documents(text_file), window, max_windows)
    nlls, sparsity = {}, {}
    for role, model_input in models.items():
        lm, _ = load_causal_lm(model_input.source, ctx.hardware)
        nlls[role] = window_nlls(lm, windows, batch_size, desc=f"{role} nll")
        sparsity[role] = group_sparsity(layer_sparsity(lm))
        del lm
    estimates = {role: mean_estimate(v, confidence=confidence, seed=seed) for role, v in nlls.items()}
    recovery = compare_paired(nlls["recovered"], nlls["pruned"], confidence=confidence, seed=seed)
    closed = gap_closed(nlls["dense"], nlls["pruned"], nlls["recovered"])
    # No gap (pruning did not raise perplexity): nothing to close, no interval.
    low, high = gap_closed_interval(nlls, confidence, seed) if math.isfinite(closed) else (math.nan, math.nan)

    with ctx.create_artifact(inputs) as out:
        for role, e in estimates.items():
            out.metrics[f"{role}_perplexity"] = round(math.exp(e.value), 4)
            out.metrics[f"{role}_perplexity_ci"] = [round(math.exp(e.low), 4), round(math.exp(e.high), 4)]
        out.metrics.update({
            "windows": len(windows), "tokens_per_window": window,
            # NLL difference recovered − pruned per window: negative = recovery lowered the loss.
            "recovered_minus_pruned_nll": round(recovery.difference, 5),
            "recovered_minus_pruned_nll_ci": [round(recovery.low, 5), round(recovery.high, 5)],
            "recovery_p_value": recovery.p_value,
            "recovery_significant": bool(recovery.significant_drop),
            "gap_closed": _finite(closed), "gap_closed_ci": [_finite(low), _finite(high)],
            **{f"{role}_{group}_sparsity": v for role in ("pruned", "recovered")
               for group, v in sparsity[role].items() if group in ("attention", "mlp")},
        })
        out.extra["nll_per_window"] = {role: [round(v, 5) for v in values] for role, values in nlls.items()}
        m = out.metrics
        out.extra["headline"] = [
            f"gap closed {m['gap_closed']} {m['gap_closed_ci']} n={len(windows)} windows",
            "ppl dense / pruned / recovered " + " / ".join(f"{m[f'{r}_perplexity']:.2f}" for r in ROLES),
            "sparsity kept: " + ", ".join(f"{g} {m.get(f'recovered_{g}_sparsity', math.nan):.3f}" for g in ("attention", "mlp"))]
        _plot(estimates, closed, (low, high), len(windows), out.dir / "recovery_gap.png")
        log.info("perplexity dense %s / pruned %s / recovered %s; gap closed %s %s (n=%d windows)",
                 *(out.metrics[f"{r}_perplexity"] for r in ROLES), out.metrics["gap_closed"],
                 out.metrics["gap_closed_ci"], len(windows))
    return out.artifact


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def _plot(estimates: dict, closed: float, interval: tuple, n: int, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [math.exp(estimates[r].value) for r in ROLES]
    errors = [[v - math.exp(estimates[r].low) for r, v in zip(ROLES, values)],
              [math.exp(estimates[r].high) - v for r, v in zip(ROLES, values)]]
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.bar(ROLES, values, yerr=errors, capsize=6, color=["tab:gray", "tab:red", "tab:green"])
    axes.set_ylabel("perplexity (95 % interval)")
    axes.set_title(f"gap closed {100 * closed:.0f} % [{100 * interval[0]:.0f}, {100 * interval[1]:.0f}] (n={n} windows)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
