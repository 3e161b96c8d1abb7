"""`evaluate.py stage=suite`: the offline lm-eval task suite on an HF folder, a GGUF file or a served API."""

import json
import logging
import time
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.evaluate import offline_data
from cogumi.evaluate.harness import KINDS, PRIMARY, ModelTarget, check_tasks, per_sample, run_suite, scores
from cogumi.stage import StageContext
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
    return _gguf_target(ctx, model, gguf_type, threads)


def _gguf_target(ctx: StageContext, model: str, gguf_type: str | None, threads):
    if model == "base":
        if not ctx.model.gguf:
            raise ConfigError(f"model '{ctx.model.name}' names no gguf file: give stage.run.model=<artifact or .gguf>")
        return ModelTarget("gguf", ctx.model.gguf, threads=threads), ctx.model.gguf
    if model.endswith(".gguf"):
        if not Path(model).is_file():
            raise ConfigError(f"stage.run.model={model}: no such GGUF file")
        return ModelTarget("gguf", model, threads=threads), model
    artifact = ctx.store.resolve(model)
    files = sorted((artifact.path / "gguf").glob("*.gguf"))
    chosen = [f for f in files if gguf_type is None or f.stem == gguf_type]
    if not chosen:
        raise ConfigError(f"artifact {artifact.ref} has no gguf/{gguf_type or '*'}.gguf "
                          f"(has: {[f.name for f in files]}); set stage.run.gguf_type")
    return ModelTarget("gguf", str(chosen[0]), threads=threads), artifact


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


def flat_metrics(table: dict) -> dict:
    """`<task>/<metric>` values, plus `suite/primary_mean` (mean of each task's primary metric)."""
    flat = {f"{task}/{metric}": round(value, 4) for task, row in table.items() for metric, value in row.items()}
    primaries = [row[PRIMARY[task]] for task, row in table.items() if PRIMARY[task] in row]
    if primaries:
        flat["suite/primary_mean"] = round(sum(primaries) / len(primaries), 4)
    return flat


def markdown_table(table: dict, counts: dict) -> str:
    lines = ["| task | n | primary metric | value |", "|---|---|---|---|"]
    for task in sorted(table):
        metric = PRIMARY[task]
        lines.append(f"| {task} | {counts.get(task, 0)} | {metric} | {table[task].get(metric, float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


def write_samples(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, default=str) + "\n")


def run(ctx: StageContext, model: str, kind: str, tasks: list[str], limit: int | None, limits: dict | None,
        part: str, max_gen_toks: int | None, chat_template: bool, gguf_type: str | None = None,
        api_model: str = "", seed: int = 1234) -> Artifact:
    if part not in offline_data.PARTS:
        raise ConfigError(f"stage.run.part={part!r}: expected one of {offline_data.PARTS}")
    tasks = list(tasks)
    check_tasks(tasks, kind)
    per_task = task_limits(tasks, limit, limits)
    target, identity = resolve_target(ctx, kind, model, gguf_type, api_model)
    inputs = {"model": identity}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    table, records, wall = evaluate_suite(target, tasks, per_task, part, seed, chat_template, max_gen_toks)
    counts = {t: sum(r["task"] == t for r in records) for t in tasks}
    with ctx.create_artifact(inputs) as out:
        (out.dir / "results.json").write_text(json.dumps({"kind": kind, "location": target.location,
                                                          "scores": table, "counts": counts}, indent=2))
        write_samples(out.dir / "samples.jsonl", records)
        (out.dir / "table.md").write_text(markdown_table(table, counts))
        out.metrics.update(flat_metrics(table))
        out.metrics.update({"items": len(records), "eval_wall_s": round(wall, 1)})
        out.extra["data"] = [offline_data.source_record(SET_OF[t], part) | {"items": counts[t]} for t in tasks]
        out.extra["model_kind"] = kind
        log.info("suite on %s (%s):\n%s", target.location, kind, markdown_table(table, counts))
    return out.artifact


def stage_config(**knobs) -> dict:
    """The resolved `stage` node `evaluate.py stage=suite` would have with these knobs."""
    knobs = {"model": "base", "kind": "hf", "gguf_type": None, "api_model": "", "limit": None, "limits": None,
             "part": "gate", "max_gen_toks": None, "chat_template": False, "seed": 1234, **knobs}
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
                       fingerprint_config={"stage": stage, "model": ctx.fingerprint_config["model"],
                                           "hardware": ctx.fingerprint_config["hardware"]},
                       tracker=NullTracker(), force=False)  # force reruns the calling stage, not the suite
    return run(sub, **knobs)


def read_samples(artifact: Artifact) -> list[dict]:
    with (artifact.path / "samples.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
