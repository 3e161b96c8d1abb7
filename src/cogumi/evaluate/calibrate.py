"""`evaluate.py stage=calibrate`: temperature scaling of the model's multiple-choice answer confidence.

The model scores every option of held-out MC items (lm-eval loglikelihoods, from the mining half so
the gates' items stay unseen); confidence = softmax over the options' loglikelihoods. T is fitted
by NLL on one half of those items and ECE is reported before/after on the other half. The artifact's
`temperature.json` is what the router reads to turn scores into calibrated confidence.
"""

import json
import logging

from cogumi.artifacts import Artifact
from cogumi.errors import CogumiError, ConfigError
from cogumi.evaluate import calibration, offline_data
from cogumi.evaluate.harness import LOGLIKELIHOOD_TASKS, per_sample, run_suite
from cogumi.evaluate.suite import SET_OF, resolve_target
from cogumi.stage import StageContext
from cogumi.stats import mean_estimate

log = logging.getLogger(__name__)


def calibration_items(records: list[dict]) -> tuple[list[list[float]], list[int], list[str]]:
    scores, labels, tasks = [], [], []
    for r in records:
        if r.get("choice_logprobs") is not None:
            scores.append(r["choice_logprobs"])
            labels.append(int(r["target"]))
            tasks.append(r["task"])
    return scores, labels, tasks


def calibrate(scores, labels, bins: int) -> dict:
    """Fit T on even items, measure on odd items; every number the artifact reports."""
    fit_s, fit_y = scores[0::2], labels[0::2]
    ev_s, ev_y = scores[1::2], labels[1::2]
    if len(fit_y) < 5 or len(ev_y) < 5:
        raise CogumiError(f"calibration needs at least 10 scored MC items, got {len(labels)}: raise stage.run.limit")
    temperature = calibration.fit_temperature(fit_s, fit_y)
    conf_before, correct = calibration.confidences(ev_s, ev_y, 1.0)
    conf_after, _ = calibration.confidences(ev_s, ev_y, temperature)
    accuracy = mean_estimate(correct)
    return {
        "temperature": temperature,
        "fit_items": len(fit_y), "eval_items": len(ev_y),
        "accuracy": accuracy.value, "accuracy_low": accuracy.low, "accuracy_high": accuracy.high,
        "ece_before": calibration.expected_calibration_error(conf_before, correct, bins),
        "ece_after": calibration.expected_calibration_error(conf_after, correct, bins),
        "ece_before_interval": calibration.ece_interval(conf_before, correct, bins),
        "ece_after_interval": calibration.ece_interval(conf_after, correct, bins),
        "nll_before": calibration.nll(ev_s, ev_y, 1.0),
        "nll_after": calibration.nll(ev_s, ev_y, temperature),
        "bins_before": calibration.reliability_bins(conf_before, correct, bins),
        "bins_after": calibration.reliability_bins(conf_after, correct, bins),
    }


def run(ctx: StageContext, model: str, kind: str, tasks: list[str], limit: int | None, part: str,
        bins: int = 10, gguf_type: str | None = None, seed: int = 1234) -> Artifact:
    tasks = list(tasks)
    if bad := [t for t in tasks if t not in LOGLIKELIHOOD_TASKS]:
        raise ConfigError(f"stage.run.tasks: {bad} are not multiple-choice tasks; use some of {LOGLIKELIHOOD_TASKS}")
    if part == "gate":
        raise ConfigError("stage.run.part=gate: calibration must not use the gating half (use mine)")
    target, identity = resolve_target(ctx, kind, model, gguf_type)
    inputs = {"model": identity}
    log.info("calibration on %s: %s items per task (mine half), %s", target.location, limit, tasks)
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    results = run_suite(target, tasks, {t: limit for t in tasks}, part=part, seed=seed)
    scores, labels, item_tasks = calibration_items(per_sample(results))
    report = calibrate(scores, labels, bins)
    with ctx.create_artifact(inputs) as out:
        (out.dir / "temperature.json").write_text(json.dumps({
            "temperature": report["temperature"], "applies_to": "softmax over option loglikelihoods / T",
            "model": target.location, "kind": kind}, indent=2))
        (out.dir / "report.json").write_text(json.dumps(report, indent=2))
        calibration.plot_reliability(out.dir / "reliability.png", report["bins_before"], report["bins_after"],
                                     report["ece_before"], report["ece_after"], report["temperature"])
        out.metrics.update({k: round(report[k], 5) for k in ("temperature", "ece_before", "ece_after",
                                                             "nll_before", "nll_after", "accuracy", "accuracy_low",
                                                             "accuracy_high")})
        for when in ("before", "after"):
            low, high = report[f"ece_{when}_interval"]
            out.metrics.update({f"ece_{when}_low": round(low, 5), f"ece_{when}_high": round(high, 5)})
        out.metrics.update({"fit_items": report["fit_items"], "eval_items": report["eval_items"]})
        n = report["eval_items"]
        out.extra["headline"] = [
            f"ECE {report['ece_before']:.3f} -> {report['ece_after']:.3f} "
            f"[{report['ece_after_interval'][0]:.3f}, {report['ece_after_interval'][1]:.3f}] n={n}",
            f"T={report['temperature']:.2f} fit on n={report['fit_items']}",
            f"acc {report['accuracy']:.3f} [{report['accuracy_low']:.3f}, {report['accuracy_high']:.3f}] n={n}"]
        out.extra["data"] = [offline_data.source_record(SET_OF[t], part) | {"items": item_tasks.count(t)}
                             for t in tasks]
        log.info("temperature %.3f: ECE %.4f -> %.4f, NLL %.4f -> %.4f on %d held-out items",
                 report["temperature"], report["ece_before"], report["ece_after"], report["nll_before"],
                 report["nll_after"], report["eval_items"])
    return out.artifact
