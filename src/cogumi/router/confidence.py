"""P(correct) of an answer the base generated, from its own token log-probabilities.

Features of one answer (FEATURES): mean, minimum and 10 %-quantile token logprob of the answer's
tokens; the entropy of the alternatives, the chosen one's share among them and its margin over the
runner-up; the share after length normalisation; log of the answer's token count. For a generated
answer the alternatives are each token's top logprobs; for a multiple-choice answer they are the
options (total loglikelihoods: the option probability; per-token means: lm-eval's `acc_norm`).
Calibrators map them to P(correct): temperature scaling of the options (the Guo et al. fit), Platt
(logistic regression on all features), isotonic regression on the chosen share, and isotonic on top
of Platt (Platt's ranking, isotonic's bins). The one with the lowest cross-validated Brier score on
the fitting items is kept.
"""

import math

import numpy as np

from cogumi.errors import ConfigError
from cogumi.evaluate import calibration

FEATURES = ("mean_logprob", "min_logprob", "q10_logprob", "mean_entropy", "chosen_share", "margin",
            "normalised_share", "log_tokens")
SHARE = FEATURES.index("chosen_share")
KINDS = ("temperature", "platt", "isotonic", "platt_isotonic")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _shares(top: dict[str, float], chosen_logprob: float, temperature: float = 1.0) -> tuple[float, float, float]:
    """(share of the chosen token, entropy, margin over the best other) among the top alternatives."""
    values = np.array(list(top.values()), dtype=np.float64)
    if not np.isclose(values, chosen_logprob, atol=1e-6).any():
        values = np.append(values, chosen_logprob)  # the chosen token was not among the listed top
    p = _softmax(values / temperature)
    chosen = math.exp(chosen_logprob / temperature - (values / temperature).max()) / np.exp(
        values / temperature - (values / temperature).max()).sum()
    others = np.sort(p)[::-1]
    runner_up = others[1] if others[0] <= chosen + 1e-12 and len(others) > 1 else others[0]
    return float(chosen), float(-(p * np.log(np.clip(p, 1e-12, None))).sum()), float(chosen - runner_up)


def _option_features(options: dict, temperature: float) -> tuple[float, float, float, float]:
    """(share, entropy, margin, length-normalised share) of the chosen (highest-total) option."""
    totals = np.asarray(options["logprobs"], dtype=np.float64)
    tokens = np.clip(np.asarray(options.get("tokens") or [1] * len(totals), dtype=np.float64), 1, None)
    chosen = int(np.argmax(totals))
    p = _softmax(totals / temperature)
    ranked = np.sort(p)[::-1]
    margin = float(ranked[0] - ranked[1]) if len(ranked) > 1 else 1.0
    entropy = float(-(p * np.log(np.clip(p, 1e-12, None))).sum())
    return float(p[chosen]), entropy, margin, float(_softmax(totals / tokens)[chosen])


def answer_features(token_logprobs: list[float], top_logprobs: list[dict[str, float]] | None = None,
                    temperature: float = 1.0, options: dict | None = None) -> np.ndarray:
    """FEATURES of one answer; `options` = {logprobs: [total per option], tokens: [count per option]}."""
    lp = np.asarray(token_logprobs, dtype=np.float64)
    if lp.size == 0:
        raise ConfigError("confidence needs the answer's token logprobs (got none)")
    if options is not None:
        share, entropy, margin, normalised_share = _option_features(options, temperature)
    else:
        rows = [_shares(top, chosen, temperature) for chosen, top in zip(lp, top_logprobs or []) if top]
        share = float(np.mean([r[0] for r in rows])) if rows else float(np.exp(lp.mean()))
        entropy = float(np.mean([r[1] for r in rows])) if rows else 0.0
        margin = float(np.mean([r[2] for r in rows])) if rows else share
        normalised_share = share
    return np.array([lp.mean(), lp.min(), np.quantile(lp, 0.1), entropy, share, margin, normalised_share,
                     math.log(lp.size)])


def answer_options(answer: dict) -> dict | None:
    """The options of a multiple-choice answer dict (mc_answers), or None for a generated answer."""
    if answer.get("option_logprobs") is None:
        return None
    return {"logprobs": answer["option_logprobs"], "tokens": answer.get("option_tokens")}


class Calibrator:
    """Features -> P(correct); stored as a small JSON-able dict (no pickle)."""

    def __init__(self, params: dict):
        if params.get("kind") not in KINDS:
            raise ConfigError(f"calibrator kind {params.get('kind')!r}: expected one of {KINDS}")
        self.params = params

    @property
    def kind(self) -> str:
        return self.params["kind"]

    def probability(self, token_logprobs, top_logprobs=None, options: dict | None = None) -> float:
        p = self.params
        if len(token_logprobs) == 0:  # an upstream that returns no logprobs: the base rate is all we know
            return float(p.get("prior", 0.5))
        if self.kind == "temperature":
            return float(answer_features(token_logprobs, top_logprobs, p["temperature"], options)[SHARE])
        features = answer_features(token_logprobs, top_logprobs, options=options)
        if self.kind == "isotonic":
            return float(np.interp(features[SHARE], p["x"], p["y"]))
        # a calibrator fitted before the last features were added reads the leading ones (same order)
        z = (features[:len(p["mean"])] - np.array(p["mean"])) / np.array(p["scale"])
        platt = 1.0 / (1.0 + math.exp(-(float(z @ np.array(p["coef"])) + p["intercept"])))
        return float(platt if self.kind == "platt" else np.interp(platt, p["x"], p["y"]))

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
    from sklearn.isotonic import IsotonicRegression

    x = np.stack([answer_features(a["token_logprobs"], a.get("top_logprobs"), options=answer_options(a))
                  for a in answers])
    if kind == "isotonic":
        model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x[:, SHARE], correct)
        return Calibrator({"kind": "isotonic", "x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()})
    from sklearn.linear_model import LogisticRegression

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    model = LogisticRegression(C=1.0, random_state=seed).fit((x - mean) / scale, correct)
    params = {"kind": "platt", "features": list(FEATURES), "mean": mean.tolist(), "scale": scale.tolist(),
              "coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0])}
    if kind == "platt":
        return Calibrator(params)
    # isotonic on Platt's output; fitted on the same items (cross-validated Brier judges the pair)
    platt = model.predict_proba((x - mean) / scale)[:, 1]
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(platt, correct)
    return Calibrator(params | {"kind": "platt_isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})


def predict(calibrator: Calibrator, answers: list[dict]) -> np.ndarray:
    return np.array([calibrator.probability(a["token_logprobs"], a.get("top_logprobs"), answer_options(a))
                     for a in answers])


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
    """ECE (10 equal-width bins; and over 15 equal-count bins), failure-prediction AUROC and Brier score,
    each with its percentile-bootstrap interval (items resampled with their outcome)."""
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=float)
    return {name: bootstrap_interval(statistic, conf, correct, seed, resamples)
            for name, statistic in (("ece", _ece), ("ece_equal_mass", calibration.equal_mass_calibration_error), ("auroc", _auroc),
                                    ("brier", _brier))}
