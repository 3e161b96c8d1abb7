"""`evaluate.py stage=route`: the router's quality-vs-cost trade-off on held-out items.

Items: MC items of the `test` split (by the router's own text-hash shares, so no item was used to
train the classifier, fit the calibrator or measure its ECE), from the mining halves only. The base
answers each item through llama.cpp (its confidence comes from the router's calibrator); the strong
route is the domain's modifier (base + LoRA adapter, measured the same way) or the teacher. With
`teacher: reference` the teacher is the items' gold answers (a stand-in for an always-right teacher,
so the curve shows how well confidence finds the base's errors). The answers are cached as a
`route_answers` artifact, so a threshold sweep scores the items once.
"""

import json
import logging
import numpy as np

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.evaluate import gguf_source
from cogumi.evaluate.suite import resolve_target
from cogumi.router import confidence, mc_answers, plots, routing_metrics
from cogumi.router.model import load_router
from cogumi.stage import StageContext
from cogumi.tracking import NullTracker

log = logging.getLogger(__name__)
STRONG = ("teacher", "modifier")


def modifier_adapter(ctx: StageContext, modifier: str | None) -> tuple[str | None, "Artifact | str | None"]:
    """(LoRA GGUF path, its identity): a .gguf file, a modifier artifact ref, or `auto` (promoted reasoning)."""
    if modifier == "auto":
        if not (ctx.store.root / "promoted" / "modifier-reasoning.json").is_file():
            return None, None
        modifier = "promoted:modifier-reasoning"
    return gguf_source.lora_file(ctx, modifier)


def _sub_context(ctx: StageContext, stage: dict) -> StageContext:
    return StageContext(stage="route_answers", store=ctx.store, model=ctx.model, hardware=ctx.hardware,
                        config={**ctx.config, "stage": stage},
                        fingerprint_config={"stage": stage, "model": ctx.fingerprint_config["model"],
                                            "hardware": ctx.fingerprint_config["hardware"]},
                        tracker=NullTracker(), force=False)


def cached_answers(ctx, router_artifact, gguf: str, model_identity, adapter, adapter_identity,
                   settings: dict) -> list[dict]:
    """Per item: base answer + calibrated confidence + predicted domain (+ the modifier's answer)."""
    sub = _sub_context(ctx, {"name": "route_answers", **settings, "adapter": str(adapter) if adapter else None})
    inputs = {"model": model_identity, "router": router_artifact}
    if adapter_identity is not None:
        inputs["modifier"] = adapter_identity
    if (previous := sub.up_to_date(inputs)) is not None:
        return [json.loads(line) for line in (previous.path / "answers.jsonl").read_text().splitlines() if line]
    router = load_router(router_artifact.path)
    items = mc_answers.mc_items(settings["sets"], "test", settings["items"], settings["val_share"],
                                settings["test_share"])
    base = mc_answers.answer_all(mc_answers.MCScorer(gguf, threads=ctx.hardware.threads), items, "base answers")
    domains = router.classify_texts([i["question"] for i in items])
    rows = [{"id": a["id"], "set": a["set"], "domain": d.domain, "base_correct": a["correct"],
             "base_seconds": a["seconds"], "confidence": router.confidence(a["token_logprobs"], a["top_logprobs"],
                                                                    confidence.answer_options(a))}
            for a, d in zip(base, domains)]
    if adapter is not None:
        scorer = mc_answers.MCScorer(gguf, lora=str(adapter), threads=ctx.hardware.threads)
        for row, a in zip(rows, mc_answers.answer_all(scorer, items, "modifier answers")):
            row |= {"modifier_correct": a["correct"], "modifier_seconds": a["seconds"]}
    with sub.create_artifact(inputs) as out:
        (out.dir / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        out.metrics.update({"items": len(rows), "base_accuracy": float(np.mean([r["base_correct"] for r in rows]))})
    return rows


def strong_route(rows: list[dict], strong: str, teacher: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    if strong == "teacher":
        if teacher != "reference":
            raise ConfigError(f"stage.run.teacher={teacher!r}: offline, only `reference` (gold answers) is measurable")
        # not a model: the gold answers, an always-right, free teacher (the upper bound of any teacher)
        return np.ones(len(rows)), np.zeros(len(rows)), "teacher = gold answers (always right; a stand-in)"
    if "modifier_correct" not in rows[0]:
        raise ConfigError("stage.run.strong=modifier but no modifier adapter was found: set stage.run.modifier")
    return (np.array([r["modifier_correct"] for r in rows], float),
            np.array([r["modifier_seconds"] for r in rows], float), "base + modifier")


def run(ctx: StageContext, router: str, model: str, gguf_type: str | None, sets: list[str], items: int,
        strong: str, teacher: str | None, modifier: str | None, threshold: float, cost_weight: float,
        seed: int = 1234) -> Artifact:
    if strong not in STRONG:
        raise ConfigError(f"stage.run.strong={strong!r}: expected one of {STRONG}")
    router_artifact = ctx.store.resolve(router)
    shares = router_artifact.manifest["config"]["stage"]["run"]
    target, identity = resolve_target(ctx, "gguf", model, gguf_type)
    adapter, adapter_identity = modifier_adapter(ctx, modifier)
    inputs = {"model": identity, "router": router_artifact, **({"modifier": adapter_identity} if adapter else {})}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous
    settings = {"sets": list(sets), "items": int(items), "val_share": shares["val_share"],
                "test_share": shares["test_share"]}
    rows = cached_answers(ctx, router_artifact, target.location, identity, adapter, adapter_identity, settings)
    confidence = np.array([r["confidence"] for r in rows])
    weak = np.array([r["base_correct"] for r in rows], float)
    weak_s = np.array([r["base_seconds"] for r in rows])
    strong_ok, strong_s, strong_name = strong_route(rows, strong, teacher)
    report = evaluate_routing(confidence, weak, strong_ok, weak_s, strong_s, threshold, cost_weight, seed)
    with ctx.create_artifact(inputs) as out:
        share, accuracy = routing_metrics.router_curve(confidence, weak, strong_ok)
        curve = [{"strong_share": float(s), "quality": float(a)} for s, a in zip(share, accuracy)]
        plots.routing_png(out.dir / "routing.png", curve, ([0, 1], [weak.mean(), strong_ok.mean()]),
                          routing_metrics.oracle_curve(weak, strong_ok), weak.mean(), strong_ok.mean(),
                          report["operating_point"], f"base vs {strong_name}, {len(rows)} held-out items")
        (out.dir / "report.json").write_text(json.dumps(report | {"strong": strong_name}, indent=2))
        (out.dir / "table.md").write_text(markdown(report, strong_name))
        out.metrics.update(flat_metrics(report))
        out.extra["data"] = {"sets": list(sets), "split": "test", "part": "mine", "items": len(rows)}
        log.info("routing (%s):\n%s", strong_name, markdown(report, strong_name))
    return out.artifact


def evaluate_routing(confidence, weak, strong, weak_s, strong_s, threshold, cost_weight, seed) -> dict:
    share, accuracy = routing_metrics.router_curve(confidence, weak, strong)
    w, s = float(weak.mean()), float(strong.mean())
    point = routing_metrics.at_threshold(threshold, confidence, weak, strong, weak_s, strong_s)
    oracle_fixable = float(((weak == 0) & (strong == 1)).mean())
    return {
        "items": len(weak), "base_accuracy": w, "strong_accuracy": s,
        "operating_point": point, "utility": point["quality"] - cost_weight * point["strong_share"],
        "cost_weight": cost_weight,
        "pgr_at_threshold": (point["quality"] - w) / (s - w) if s > w else None,
        "apgr": routing_metrics.apgr_interval(confidence, weak, strong, seed),
        "random_apgr": routing_metrics.random_apgr(weak, strong, seed),
        "apgr_minus_random": routing_metrics.apgr_difference_vs_random(confidence, weak, strong, seed),
        "cpt50": routing_metrics.cpt(share, accuracy, w, s, 0.5),
        "cpt80": routing_metrics.cpt(share, accuracy, w, s, 0.8),
        "random_quality_at_share": w + point["strong_share"] * (s - w),
        "oracle_quality_at_share": w + min(oracle_fixable, point["strong_share"]),
        "thresholds": [routing_metrics.at_threshold(t, confidence, weak, strong, weak_s, strong_s)
                       for t in np.round(np.linspace(0.0, 1.0, 11), 2)],
    }


def flat_metrics(report: dict) -> dict:
    apgr = report["apgr"]
    return {"utility": round(report["utility"], 4), "quality": round(report["operating_point"]["quality"], 4),
            "strong_share": round(report["operating_point"]["strong_share"], 4),
            "threshold": report["operating_point"]["threshold"], "items": report["items"],
            "base_accuracy": round(report["base_accuracy"], 4), "strong_accuracy": round(report["strong_accuracy"], 4),
            "apgr": apgr["value"], "apgr_low": apgr["low"], "apgr_high": apgr["high"],
            "random_apgr": report["random_apgr"]["value"], "cpt50": report["cpt50"], "cpt80": report["cpt80"],
            "apgr_minus_random": report["apgr_minus_random"]["value"],
            "apgr_minus_random_low": report["apgr_minus_random"]["low"],
            "apgr_minus_random_high": report["apgr_minus_random"]["high"]}


def markdown(report: dict, strong_name: str) -> str:
    p, a, r, d = report["operating_point"], report["apgr"], report["random_apgr"], report["apgr_minus_random"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"Held-out items: {report['items']} (strong route: {strong_name})", "",
             "| policy | share to strong | accuracy | 95% interval |", "|---|---|---|---|",
             f"| base only | 0.000 | {report['base_accuracy']:.3f} | |",
             f"| strong only | 1.000 | {report['strong_accuracy']:.3f} | |",
             f"| router, threshold {p['threshold']:.2f} | {p['strong_share']:.3f} | {p['quality']:.3f} | "
             f"[{p['quality_interval']['low']:.3f}, {p['quality_interval']['high']:.3f}] |",
             f"| random, same share | {p['strong_share']:.3f} | {report['random_quality_at_share']:.3f} | |",
             f"| oracle, same share | {p['strong_share']:.3f} | {report['oracle_quality_at_share']:.3f} | |", "",
             f"APGR {fmt(a['value'])} [{fmt(a['low'])}, {fmt(a['high'])}] vs random {fmt(r['value'])} "
             f"[{fmt(r['low'])}, {fmt(r['high'])}]; difference (paired bootstrap) {fmt(d['value'])} "
             f"[{fmt(d['low'])}, {fmt(d['high'])}]; CPT(50%) {fmt(report['cpt50'])}, CPT(80%) {fmt(report['cpt80'])}; "
             f"utility (accuracy − {report['cost_weight']} × share) {report['utility']:.3f}"]
    return "\n".join(lines) + "\n"
