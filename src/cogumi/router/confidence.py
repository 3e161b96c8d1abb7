"""P(correct) of an answer the base generated, from its own token log-probabilities.

Features of one answer: mean, minimum and 10 %-quantile token logprob, mean entropy of the top
alternatives, and the mean share of the chosen token among them (for a multiple-choice answer, one
token whose alternatives are the option letters: the option probability). Three calibrators map
them to P(correct): temperature scaling of the alternatives (the existing Guo et al. fit), Platt
(logistic regression on all features) and isotonic regression on the chosen-token share. The one with
the lowest cross-validated Brier score on the fitting items is kept.
"""

import math

import numpy as np

from cogumi.errors import ConfigError
from cogumi.evaluate import calibration

FEATURES = ("mean_logprob", "min_logprob", "q10_logprob", "mean_entropy", "chosen_share")
KINDS = ("temperature", "platt", "isotonic")


def _shares(top: dict[str, float], chosen_logprob: float, temperature: float = 1.0) -> tuple[float, float]:
    """(share of the chosen token, entropy) among the top alternatives, softmaxed at `temperature`."""
    values = np.array(list(top.values()), dtype=np.float64)
    if not np.isclose(values, chosen_logprob, atol=1e-6).any():
        values = np.append(values, chosen_logprob)  # the chosen token was not among the listed top
    z = values / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    chosen = math.exp(chosen_logprob / temperature - z.max()) / np.exp(z - z.max()).sum()
    return float(chosen), float(-(p * np.log(np.clip(p, 1e-12, None))).sum())


def answer_features(token_logprobs: list[float], top_logprobs: list[dict[str, float]] | None = None,
                    temperature: float = 1.0) -> np.ndarray:
    lp = np.asarray(token_logprobs, dtype=np.float64)
    if lp.size == 0:
        raise ConfigError("confidence needs the answer's token logprobs (got none)")
    shares, entropies = [], []
    for chosen, top in zip(lp, top_logprobs or []):
        if top:
            share, entropy = _shares(top, chosen, temperature)
            shares.append(share)
            entropies.append(entropy)
    share = float(np.mean(shares)) if shares else float(np.exp(lp.mean()))
    entropy = float(np.mean(entropies)) if entropies else 0.0
    return np.array([lp.mean(), lp.min(), np.quantile(lp, 0.1), entropy, share])


class Calibrator:
    """Features -> P(correct); stored as a small JSON-able dict (no pickle)."""

    def __init__(self, params: dict):
        if params.get("kind") not in KINDS:
            raise ConfigError(f"calibrator kind {params.get('kind')!r}: expected one of {KINDS}")
        self.params = params

    @property
    def kind(self) -> str:
        return self.params["kind"]

    def probability(self, token_logprobs, top_logprobs=None) -> float:
        p = self.params
        if len(token_logprobs) == 0:  # an upstream that returns no logprobs: the base rate is all we know
            return float(p.get("prior", 0.5))
        if self.kind == "temperature":
            return float(answer_features(token_logprobs, top_logprobs, p["temperature"])[4])
        features = answer_features(token_logprobs, top_logprobs)
        if self.kind == "platt":
            z = (features - np.array(p["mean"])) / np.array(p["scale"])
            return float(1.0 / (1.0 + math.exp(-(float(z @ np.array(p["coef"])) + p["intercept"]))))
        return float(np.interp(features[4], p["x"], p["y"]))

    def to_dict(self) -> dict:
        return dict(self.params)


def fit(kind: str, answers: list[dict], seed: int = 0) -> Calibrator:
    """`answers`: dicts with token_logprobs, top_logprobs, correct, and for MC option_logprobs + gold.

    The fitted params keep `prior` (the fit items' accuracy): the answer to "no logprobs at all".
    """
    correct = np.array([a["correct"] for a in answers], dtype=float)
    calibrator = _fit(kind, answers, correct, seed)
    calibrator.params["prior"] = float(correct.mean())
    return calibrator


def _fit(kind: str, answers: list[dict], correct: np.ndarray, seed: int) -> Calibrator:
    if kind == "temperature":
        mc = [a for a in answers if a.get("option_logprobs") is not None]
        if len(mc) < 5:
            raise ConfigError("temperature scaling needs multiple-choice answers with option scores")
        t = calibration.fit_temperature([a["option_logprobs"] for a in mc], [a["gold"] for a in mc])
        return Calibrator({"kind": "temperature", "temperature": t})
    x = np.stack([answer_features(a["token_logprobs"], a.get("top_logprobs")) for a in answers])
    if kind == "platt":
        from sklearn.linear_model import LogisticRegression

        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
        model = LogisticRegression(C=1.0, random_state=seed).fit((x - mean) / scale, correct)
        return Calibrator({"kind": "platt", "features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
                           "coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0])})
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x[:, 4], correct)
    return Calibrator({"kind": "isotonic", "x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()})


def predict(calibrator: Calibrator, answers: list[dict]) -> np.ndarray:
    return np.array([calibrator.probability(a["token_logprobs"], a.get("top_logprobs")) for a in answers])


def cross_validated_brier(kind: str, answers: list[dict], folds: int = 5, seed: int = 0) -> float:
    from sklearn.model_selection import KFold

    errors = []
    for fit_idx, held_idx in KFold(folds, shuffle=True, random_state=seed).split(answers):
        calibrator = fit(kind, [answers[i] for i in fit_idx], seed)
        held = [answers[i] for i in held_idx]
        errors.append(np.mean((predict(calibrator, held) - np.array([a["correct"] for a in held])) ** 2))
    return float(np.mean(errors))


def choose(answers: list[dict], kinds=KINDS, seed: int = 0) -> tuple[Calibrator, dict]:
    """The calibrator kind with the lowest cross-validated Brier score, refitted on every answer."""
    briers = {kind: cross_validated_brier(kind, answers, seed=seed) for kind in kinds}
    best = min(briers, key=briers.get)
    return fit(best, answers, seed), briers


# ---- how good a confidence is, with intervals ------------------------------------------------------
def _auroc(conf, correct) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(correct, conf)) if 0 < np.mean(correct) < 1 else float("nan")


def _ece(conf, correct) -> float:
    return calibration.expected_calibration_error(np.asarray(conf), np.asarray(correct))


def _brier(conf, correct) -> float:
    return float(np.mean((np.asarray(conf) - np.asarray(correct)) ** 2))


def bootstrap_interval(statistic, conf: np.ndarray, correct: np.ndarray, seed: int = 0,
                       resamples: int = 1000) -> dict:
    """The statistic on all items and its 95 % percentile-bootstrap interval over items (scipy)."""
    from scipy.stats import bootstrap

    value = statistic(conf, correct)
    result = bootstrap((conf, correct), statistic, paired=True, vectorized=False, n_resamples=resamples,
                       method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return {"value": round(value, 4), "low": round(float(low), 4), "high": round(float(high), 4), "n": len(conf)}


def quality(conf: np.ndarray, correct: np.ndarray, seed: int = 0, resamples: int = 1000) -> dict:
    """ECE (10 equal-width bins), failure-prediction AUROC and Brier score, each with its interval."""
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=float)
    return {name: bootstrap_interval(statistic, conf, correct, seed, resamples)
            for name, statistic in (("ece", _ece), ("auroc", _auroc), ("brier", _brier))}
