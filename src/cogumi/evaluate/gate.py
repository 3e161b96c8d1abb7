"""`evaluate.py stage=gate gates=mvp`: measure an artifact, check the gate's thresholds, promote if it passes.

Measurements: the gate's lm-eval tasks (through the `suite` stage, so results are cached as suite
artifacts), the model's size on disk, fidelity to the reference (perplexity, KL, top-1 agreement,
via evaluate/fidelity.py) and the metrics already in the candidate's manifest. Relative checks on
task metrics compare candidate and reference on the same items (paired test, gate_checks.py).
Only a passing artifact becomes `promoted:<gates.promote_as>`; a failing one leaves the previous
promotion live (the seeds' alert + rollback) and the command exits 1.

The candidate may be a GGUF plus a LoRA adapter (`lora`): it is evaluated through llama.cpp with the
adapter applied, the reference without it, and on a pass the LoRA's artifact is what gets promoted.
`kind` picks the back end of both sides (auto = the candidate's own; gguf on an HF model = its F16 export).
"""

import json
import logging
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.errors import CogumiError, ConfigError
from cogumi.evaluate import estimates, gguf_source, suite
from cogumi.evaluate.gate_checks import check_all, needed_metrics, results_table, validate
from cogumi.evaluate.harness import PRIMARY
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


def eval_kind(requested: str, candidate_kind: str, lora: str | None) -> str:
    """The back end both sides are scored with: `auto` = the candidate's own (llama.cpp for a LoRA)."""
    if requested not in ("auto", "hf", "gguf"):
        raise ConfigError(f"stage.run.kind={requested!r}: expected auto, hf or gguf")
    kind = ("gguf" if lora else candidate_kind) if requested == "auto" else requested
    if kind == "hf" and (candidate_kind == "gguf" or lora):
        raise ConfigError("stage.run.kind=hf: the candidate is a GGUF (or GGUF + LoRA); use kind=gguf or auto")
    return kind


def suite_run(ctx: StageContext, ref: str, kind: str, gates: dict, gguf_type: str | None,
              lora: str | None = None) -> Artifact | None:
    """The gate's tasks on one model, run as a cached `suite` stage (None when the gate has no tasks)."""
    if not gates.get("tasks"):
        return None
    own_kind = locate(ctx, ref)[0]
    if kind == "gguf" and own_kind == "hf":  # an HF model through llama.cpp: its export (F16 unless the gate says)
        gguf_type = gates.get("export_type") or gguf_source.EXPORT_TYPE
    return suite.run_cached(ctx, model=ref, kind=kind, tasks=list(gates["tasks"]), limit=gates.get("limit"),
                            limits=gates.get("limits"), part=gates.get("part", "gate"),
                            max_gen_toks=gates.get("max_gen_toks"), gguf_type=gguf_type if kind == "gguf" else None,
                            lora=lora, chat_template=bool(gates.get("chat_template", False)))


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


def measure(ctx: StageContext, ref: str, gates: dict, kind: str, gguf_type: str | None = None,
            lora: str | None = None) -> tuple[dict, Artifact | None]:
    """(the model's metrics, its suite artifact)."""
    own_kind, location, artifact = locate(ctx, ref)
    metrics = dict(artifact.metrics) if artifact is not None else {}
    metrics["size_mb"] = size_mb(own_kind, location)
    if lora:
        metrics["size_mb"] = round(metrics["size_mb"] + Path(gguf_source.lora_file(ctx, lora)[0]).stat().st_size / 2**20, 2)
    evaluated = suite_run(ctx, ref, kind, gates, gguf_type, lora)
    if evaluated is not None:
        metrics.update(evaluated.metrics)
    return metrics, evaluated


def own_domain_lora(ctx: StageContext, lora: str | None, domain: str | None) -> str | None:
    """A modifier gate of `domain` takes that domain's LoRA, named by its artifact ref.

    `latest:modifier` means the newest modifier *of this domain*: in a resumed pipeline that trains two
    modifiers, the plain newest one can be the other domain's (cached steps make no new artifacts).
    A LoRA made for another domain is refused."""
    if not lora or not domain or lora.endswith(".gguf"):
        return lora
    ref = None if lora == "latest:modifier" else lora
    return ctx.store.of_domain("modifier", domain, ref, wanted_by="this gate").ref


def run(ctx: StageContext, artifact: str, gates: dict, fidelity: dict, promote: bool = True,
        lora: str | None = None, kind: str = "auto", gguf_type: str | None = None) -> Artifact:
    validate(gates, where=f"gates ({gates.get('name', '?')})")
    candidate = locate(ctx, artifact)
    scored_kind = eval_kind(kind, candidate[0], lora)
    reference_ref = gates.get("reference")
    reference = locate(ctx, reference_ref) if reference_ref else None
    lora = own_domain_lora(ctx, lora, gates.get("domain"))
    adapter, adapter_identity = gguf_source.lora_file(ctx, lora)
    inputs = {"candidate": candidate[2] or candidate[1]}
    if adapter:
        inputs["lora"] = adapter_identity
    if reference is not None:
        inputs["reference"] = reference[2] or reference[1]
    if (previous := ctx.up_to_date(inputs)) is None:
        previous = _evaluate(ctx, artifact, candidate, reference_ref, reference, gates, fidelity, inputs,
                             scored_kind, gguf_type, lora)
    promoted = adapter_identity if isinstance(adapter_identity, Artifact) else (None if adapter else candidate[2])
    return _decide(ctx, previous, promoted, gates, promote)


def _evaluate(ctx, ref, candidate, reference_ref, reference, gates, fidelity_settings, inputs, kind, gguf_type,
              lora) -> Artifact:
    metrics, candidate_suite = measure(ctx, ref, gates, kind, gguf_type, lora)
    # The same artifact as reference (a LoRA gate: the GGUF without its adapter) means the same file.
    reference_type = gguf_type if reference_ref == ref else None
    reference_metrics, reference_suite = measure(ctx, reference_ref, gates, kind, reference_type) \
        if reference is not None else (None, None)
    wanted = needed_metrics(gates)
    if reference is not None and fidelity_settings.get("enabled") and wanted & {"kl_mean", "top1_agreement",
                                                                              "perplexity"}:
        metrics.update(fidelity_metrics(ctx, candidate, reference, fidelity_settings))
    intervals = candidate_suite.manifest.get("estimates", {}) if candidate_suite is not None else {}
    comparisons = {}
    if candidate_suite is not None and reference_suite is not None:
        comparisons = estimates.paired(suite.item_scores(candidate_suite), suite.item_scores(reference_suite), PRIMARY)
    results = check_all(gates, metrics, reference_metrics, intervals, comparisons)
    passed = bool(results) and all(r.passed for r in results)
    with ctx.create_artifact(inputs) as out:
        (out.dir / "table.md").write_text(results_table(results))
        (out.dir / "results.json").write_text(json.dumps({
            "passed": passed, "checks": [r.row() for r in results], "metrics": metrics,
            "reference_metrics": reference_metrics, "kind": kind,
            "comparisons": {k: c.to_dict() for k, c in comparisons.items()},
            "suites": {"candidate": candidate_suite and candidate_suite.ref,
                       "reference": reference_suite and reference_suite.ref}}, indent=2, default=str))
        out.metrics.update({"passed": int(passed), "checks": len(results),
                            "failed_checks": sum(not r.passed for r in results)})
        out.metrics.update({k: metrics[k] for k in sorted(wanted) if isinstance(metrics.get(k), (int, float))})
        for key, c in comparisons.items():
            if key in wanted:
                out.metrics.update({f"{key}/diff": round(c.difference, 4), f"{key}/diff_low": round(c.low, 4),
                                    f"{key}/diff_high": round(c.high, 4), f"{key}/p_value": round(c.p_value, 5)})
        out.extra["gate"] = {"name": gates.get("name"), "candidate": ref, "lora": lora, "reference": reference_ref,
                             "kind": kind}
        out.extra["headline"] = [f"{r.metric} {r.bound}: {'PASS' if r.passed else 'FAIL'}" + (
            f" Δ{r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}] n={r.n}" if r.kind == "relative" and r.low is not None
            else f" {r.value:.4g}" if r.value is not None else "")
            for r in sorted(results, key=lambda r: r.passed)]  # failed checks first: the table shows three
        out.extra["verdict"] = "PASS" if passed else "FAIL"
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
