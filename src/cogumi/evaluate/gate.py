"""`evaluate.py stage=gate gates=mvp`: measure an artifact, check the gate's thresholds, promote if it passes.

Measurements: the gate's lm-eval tasks (through the `suite` stage, so results are cached as suite
artifacts), the model's size on disk, fidelity to the reference (perplexity, KL, top-1 agreement,
via evaluate/fidelity.py) and the metrics already in the candidate's manifest. Only a passing
artifact becomes `promoted:<gates.promote_as>`; a failing one leaves the previous promotion live
(the seeds' alert + rollback) and the command exits 1.
"""

import json
import logging
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.errors import CogumiError, ConfigError
from cogumi.evaluate import suite
from cogumi.evaluate.gate_checks import check_all, needed_metrics, results_table, validate
from cogumi.stage import StageContext

log = logging.getLogger(__name__)


class GateFailed(CogumiError):
    """The artifact missed a threshold: not promoted, exit code 1."""


def locate(ctx: StageContext, ref: str) -> tuple[str, str, Artifact | None]:
    """(kind, location, artifact) of a model ref: `base`, an artifact with model/ or gguf/, or a .gguf path."""
    if ref == "base":
        return "hf", ctx.model.source, None
    if ref.endswith(".gguf"):
        return "gguf", ref, None
    artifact = ctx.store.resolve(ref)
    if (artifact.path / "gguf").is_dir():
        return "gguf", str(sorted((artifact.path / "gguf").glob("*.gguf"))[0]), artifact
    if (artifact.path / "model").is_dir():
        return "hf", str(artifact.path / "model"), artifact
    raise ConfigError(f"{ref}: artifact {artifact.ref} holds neither model/ nor gguf/: nothing to gate")


def size_mb(kind: str, location: str) -> float:
    path = Path(location)
    files = [path] if kind == "gguf" else [f for f in path.glob("*") if f.suffix in (".safetensors", ".bin")]
    return round(sum(f.stat().st_size for f in files) / 2**20, 2)


def suite_metrics(ctx: StageContext, ref: str, kind: str, gates: dict) -> dict:
    """The gate's tasks on one model, run as a cached `suite` stage."""
    if not gates.get("tasks"):
        return {}
    return dict(suite.run_cached(ctx, model=ref, kind=kind, tasks=list(gates["tasks"]), limit=gates.get("limit"),
                                 limits=gates.get("limits"), part=gates.get("part", "gate"),
                                 max_gen_toks=gates.get("max_gen_toks")).metrics)


def fidelity_metrics(ctx: StageContext, candidate: tuple, reference: tuple, settings: dict) -> dict:
    from cogumi.data.text import read_documents
    from cogumi.evaluate.fidelity import fidelity, open_scorer
    from cogumi.models import load_tokenizer

    tokenizer_source = reference[1] if reference[0] == "hf" else ctx.model.source
    tokenizer = load_tokenizer(tokenizer_source)
    model, ref = open_scorer(candidate[1], ctx.hardware), open_scorer(reference[1], ctx.hardware)
    try:
        report = fidelity(model, ref, tokenizer, read_documents(settings["text_file"]), settings["window"],
                          settings["max_windows"], ctx.hardware.eval_batch_size)
    finally:
        model.close()
        ref.close()
    return {k: report[k] for k in ("perplexity", "reference_perplexity", "kl_mean", "top1_agreement")}


def measure(ctx: StageContext, ref: str, gates: dict) -> dict:
    kind, location, artifact = locate(ctx, ref)
    metrics = dict(artifact.metrics) if artifact is not None else {}
    metrics["size_mb"] = size_mb(kind, location)
    metrics.update(suite_metrics(ctx, ref, kind, gates))
    return metrics


def run(ctx: StageContext, artifact: str, gates: dict, fidelity: dict, promote: bool = True) -> Artifact:
    validate(gates, where=f"gates ({gates.get('name', '?')})")
    candidate = locate(ctx, artifact)
    reference_ref = gates.get("reference")
    reference = locate(ctx, reference_ref) if reference_ref else None
    inputs = {"candidate": candidate[2] or candidate[1]}
    if reference is not None:
        inputs["reference"] = reference[2] or reference[1]
    if (previous := ctx.up_to_date(inputs)) is None:
        previous = _evaluate(ctx, artifact, candidate, reference_ref, reference, gates, fidelity, inputs)
    return _decide(ctx, previous, candidate[2], gates, promote)


def _evaluate(ctx, ref, candidate, reference_ref, reference, gates, fidelity_settings, inputs) -> Artifact:
    metrics = measure(ctx, ref, gates)
    reference_metrics = measure(ctx, reference_ref, gates) if reference is not None else None
    wanted = needed_metrics(gates)
    if reference is not None and fidelity_settings.get("enabled") and wanted & {"kl_mean", "top1_agreement",
                                                                              "perplexity"}:
        metrics.update(fidelity_metrics(ctx, candidate, reference, fidelity_settings))
    results = check_all(gates, metrics, reference_metrics)
    passed = bool(results) and all(r.passed for r in results)
    with ctx.create_artifact(inputs) as out:
        (out.dir / "table.md").write_text(results_table(results))
        (out.dir / "results.json").write_text(json.dumps({
            "passed": passed, "checks": [r.row() for r in results], "metrics": metrics,
            "reference_metrics": reference_metrics}, indent=2, default=str))
        out.metrics.update({"passed": int(passed), "checks": len(results),
                            "failed_checks": sum(not r.passed for r in results)})
        out.metrics.update({k: metrics[k] for k in sorted(wanted) if isinstance(metrics.get(k), (int, float))})
        out.extra["gate"] = {"name": gates.get("name"), "candidate": ref, "reference": reference_ref}
    return out.artifact


def _decide(ctx: StageContext, result: Artifact, candidate: Artifact | None, gates: dict, promote: bool) -> Artifact:
    table = (result.path / "table.md").read_text()
    name = gates.get("promote_as")
    if result.metrics.get("passed"):
        log.info("gate %s PASSED\n%s", gates.get("name"), table)
        if promote and name and candidate is not None:
            ctx.store.promote(candidate, name)
            log.info("promoted %s as promoted:%s", candidate.ref, name)
        elif promote and name:
            log.info("the candidate is not an artifact: nothing to promote as promoted:%s", name)
        return result
    log.error("gate %s FAILED\n%s", gates.get("name"), table)
    kept = ctx.store.root / "promoted" / f"{name}.json"
    where = json.loads(kept.read_text())["artifact"] if kept.is_file() else "nothing"
    raise GateFailed(f"gate '{gates.get('name')}' failed {result.metrics.get('failed_checks')} of "
                     f"{result.metrics.get('checks')} checks ({result.path / 'table.md'}); "
                     f"not promoted, promoted:{name} stays {where}")
