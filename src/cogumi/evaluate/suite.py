"""`evaluate.py stage=suite`: the offline lm-eval task suite on an HF folder, a GGUF file or a served API."""

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.evaluate import estimates, gguf_source, offline_data
from cogumi.evaluate.harness import KINDS, PRIMARY, ModelTarget, check_tasks, per_sample, run_suite, scores
from cogumi.stage import StageContext
from cogumi.stats import Estimate
from cogumi.tracking import NullTracker

log = logging.getLogger(__name__)

# lm-eval task name -> offline set name (for the provenance record).
SET_OF = {task: task.removeprefix("cogumi_") for task in PRIMARY}


def resolve_target(ctx: StageContext, kind: str, model: str, gguf_type: str | None = None,
                   api_model: str = "") -> tuple[ModelTarget, "Artifact | str"]:
    """(what lm-eval evaluates, its identity for the manifest) from `kind` and a model ref."""
    batch, threads = ctx.hardware.eval_batch_size, ctx.hardware.threads
    if kind not in KINDS:
        raise ConfigError(f"stage.run.kind={kind!r}: expected one of {KINDS}")
    if kind == "hf":
        source = ctx.model_input(model)
        return ModelTarget("hf", source.source, batch_size=batch), source.identity
    if kind == "api":
        if not model.startswith(("http://", "https://")):
            raise ConfigError(f"stage.run.model={model!r}: kind=api needs a base URL such as http://127.0.0.1:8321/v1")
        return ModelTarget("api", model, api_model=api_model or ctx.model.name), model
    location, identity = gguf_source.gguf_file(ctx, model, gguf_type)
    return ModelTarget("gguf", location, threads=threads), identity


def with_lora(ctx: StageContext, target: ModelTarget, inputs: dict, lora: str | None) -> ModelTarget:
    """The target with a GGUF LoRA adapter applied (its identity joins `inputs`), or unchanged."""
    if not lora:
        return target
    if target.kind != "gguf":
        raise ConfigError(f"stage.run.lora={lora}: a LoRA adapter is applied by llama.cpp; set stage.run.kind=gguf")
    adapter, identity = gguf_source.lora_file(ctx, lora)
    inputs["lora"] = identity
    return replace(target, lora=adapter)


def task_limits(tasks: list[str], limit: int | None, limits: dict | None) -> dict:
    limits = dict(limits or {})
    if unknown := set(limits) - set(tasks):
        raise ConfigError(f"stage.run.limits names task(s) not in stage.run.tasks: {sorted(unknown)}")
    return {t: limits.get(t, limit) for t in tasks}


def evaluate_suite(target: ModelTarget, tasks: list[str], limits: dict, part: str, seed: int,
                   chat_template: bool, max_gen_toks: int | None) -> tuple[dict, list[dict], float]:
    started = time.time()
    gen = {"max_gen_toks": max_gen_toks} if max_gen_toks else {}
    results = run_suite(target, tasks, limits, part=part, seed=seed, chat_template=chat_template, gen_overrides=gen)
    return scores(results), per_sample(results), time.time() - started


def flat_metrics(table: dict, found: dict[str, Estimate]) -> dict:
    """`<task>/<metric>` values; per primary metric (and `suite/primary_mean`) its `_low`/`_high` and `/n`."""
    flat = {f"{task}/{metric}": round(value, 4) for task, row in table.items() for metric, value in row.items()}
    for key, estimate in found.items():
        flat[key] = round(estimate.value, 4)
        flat.update({f"{key}_low": round(estimate.low, 4), f"{key}_high": round(estimate.high, 4),
                     f"{key.rsplit('/', 1)[0]}/n": estimate.n})
    return flat


def markdown_table(found: dict[str, Estimate]) -> str:
    lines = ["| task | metric | n | value | 95% interval |", "|---|---|---|---|---|"]
    for key in sorted(found, key=lambda k: (k == estimates.SUITE_MEAN, k)):
        task, metric = key.rsplit("/", 1)
        e = found[key]
        lines.append(f"| {task} | {metric} | {e.n} | {e.value:.3f} | [{e.low:.3f}, {e.high:.3f}] |")
    return "\n".join(lines) + "\n"


def scores_by_item(records: list[dict]) -> dict[str, dict[str, float]]:
    """{task: {item id: primary-metric score}} of per-item records (the item id is the doc's own id)."""
    found: dict[str, dict[str, float]] = {}
    for r in records:
        score = r.get("score", float(r.get("correct", 0.0)))  # artifacts older than `score` stored only `correct`
        found.setdefault(r["task"], {})[str(r.get("id", r["doc_id"]))] = float(score)
    return found


def item_scores(artifact: Artifact) -> dict[str, dict[str, float]]:
    """{task: {doc id: primary-metric score}} of a suite artifact, so two runs pair up by item id."""
    path = artifact.path / "item_scores.json"
    if path.is_file():
        return json.loads(path.read_text())
    return scores_by_item(read_samples(artifact))


def write_samples(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, default=str) + "\n")


def run(ctx: StageContext, model: str, kind: str, tasks: list[str], limit: int | None, limits: dict | None,
        part: str, max_gen_toks: int | None, chat_template: bool, gguf_type: str | None = None,
        api_model: str = "", seed: int = 1234, lora: str | None = None) -> Artifact:
    if part not in offline_data.PARTS:
        raise ConfigError(f"stage.run.part={part!r}: expected one of {offline_data.PARTS}")
    tasks = list(tasks)
    check_tasks(tasks, kind)
    per_task = task_limits(tasks, limit, limits)
    target, identity = resolve_target(ctx, kind, model, gguf_type, api_model)
    inputs = {"model": identity}
    target = with_lora(ctx, target, inputs, lora)
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    table, records, wall = evaluate_suite(target, tasks, per_task, part, seed, chat_template, max_gen_toks)
    counts = {t: sum(r["task"] == t for r in records) for t in tasks}
    by_item = scores_by_item(records)
    found = estimates.task_estimates(by_item, PRIMARY)
    with ctx.create_artifact(inputs) as out:
        (out.dir / "results.json").write_text(json.dumps({
            "kind": kind, "location": target.location, "lora": target.lora, "scores": table, "counts": counts,
            "estimates": {k: e.to_dict() for k, e in found.items()}}, indent=2))
        (out.dir / "item_scores.json").write_text(json.dumps(by_item))
        write_samples(out.dir / "samples.jsonl", records)
        (out.dir / "table.md").write_text(markdown_table(found))
        out.metrics.update(flat_metrics(table, found))
        out.metrics.update({"items": len(records), "eval_wall_s": round(wall, 1),
                            "items_per_s": round(len(records) / max(wall, 1e-9), 2)})
        out.extra["estimates"] = {k: e.to_dict() for k, e in found.items()}
        out.extra["headline"] = [f"{k} {e}" for k, e in found.items()]
        out.extra["data"] = [offline_data.source_record(SET_OF[t], part) | {"items": counts[t]} for t in tasks]
        out.extra["model_kind"] = kind
        log.info("suite on %s (%s%s):\n%s", target.location, kind, f" + LoRA {target.lora}" if target.lora else "",
                 markdown_table(found))
    return out.artifact


def stage_config(**knobs) -> dict:
    """The resolved `stage` node `evaluate.py stage=suite` would have with these knobs."""
    knobs = {"model": "base", "kind": "hf", "gguf_type": None, "api_model": "", "lora": None, "limit": None,
             "limits": None, "part": "gate", "max_gen_toks": None, "chat_template": False, "seed": 1234, **knobs}
    knobs["limits"] = dict(knobs["limits"]) if knobs["limits"] else None
    knobs["tasks"] = list(knobs["tasks"])
    return {"name": "suite", "area": "evaluate", "run": {"_target_": f"{__name__}.run", "_partial_": True, **knobs}}


def run_cached(ctx: StageContext, **knobs) -> Artifact:
    """The suite as its own `suite` stage from inside another stage (gate, failures).

    The fingerprint is built exactly as `evaluate.py stage=suite` with the same knobs builds it, so a
    gate finds the suite artifact a pipeline step already produced instead of evaluating again.
    """
    stage = stage_config(**knobs)
    knobs = {k: v for k, v in stage["run"].items() if not k.startswith("_")}
    sub = StageContext(stage="suite", store=ctx.store, model=ctx.model, hardware=ctx.hardware,
                       config={**ctx.config, "stage": stage},
                       # the caller's fingerprint keys (model, hardware, and teacher for evaluate stages)
                       # with the suite's own stage: the same keys `evaluate.py stage=suite` fingerprints
                       fingerprint_config={**ctx.fingerprint_config, "stage": stage},
                       tracker=NullTracker(), force=False)  # force reruns the calling stage, not the suite
    return run(sub, **knobs)


def read_samples(artifact: Artifact) -> list[dict]:
    with (artifact.path / "samples.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
