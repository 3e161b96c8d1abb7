"""`train.py stage=modifier domain=<d>`: a domain's LoRA modifier, exported as a GGUF LoRA and measured against the base.

Setup → fit → package → compare, top to bottom: the cascade's data for this domain (+ a replay
slice of the curated set) trains a LoRA on the promoted student (latest:sft, with a warning, when
nothing is promoted) with the shared fine-tune recipe — that fit is cached as a `modifier_fit`
artifact (the adapter only: a modifier is served as a LoRA on its base, so nothing reads a merged
copy). The modifier artifact holds the PEFT adapter, the GGUF LoRA made by llama.cpp's converter,
and the card; it compares base GGUF vs base GGUF + LoRA on the gating half of its own tasks and of
other domains' (paired, with intervals), and promotes itself as `promoted:modifier-<d>` only when
`promote` is on and the verdict passes.
"""

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.assets import converter_dir
from cogumi.errors import ConfigError
from cogumi.modifiers import comparison as compare
from cogumi.modifiers.adapter_svd import compressed_lora
from cogumi.modifiers.base_model import gguf_of, student_ref
from cogumi.modifiers.card import render_card
from cogumi.modifiers.domain import domain_from, plain
from cogumi.modifiers.gguf_lora import check_targets, convert_lora, size_mb
from cogumi.modifiers.verifiers import verifier_from
from cogumi.stage import StageContext
from cogumi.train.distill import with_replay
from cogumi.train.examples import read_records
from cogumi.train.finetune import finetune, settings_from
from cogumi.train.sft import dataset_split

log = logging.getLogger(__name__)

# Knobs that do not change the trained weights: left out of the fit's fingerprint.
PACKAGING_KNOBS = ("comparison", "promote", "gguf_type", "lora_outtype", "compression")


def cascade_of(ctx: StageContext, ref: str | None, domain: str) -> Artifact:
    """The dataset: `ref`, or (null) the newest `cascade` artifact made for this domain."""
    return ctx.store.of_domain("cascade", domain, ref, wanted_by="this modifier")


def fit_context(ctx: StageContext) -> StageContext:
    """The fine-tune as its own cached `modifier_fit` stage (only the training knobs in its fingerprint)."""
    stage = json.loads(json.dumps(ctx.fingerprint_config["stage"]))
    for knob in PACKAGING_KNOBS:
        stage["run"].pop(knob, None)
    return replace(ctx, stage="modifier_fit", fingerprint_config={**ctx.fingerprint_config, "stage": stage},
                   _records={})


def run(ctx: StageContext, domain: dict, model: str, dataset: str | None, replay_dataset: str | None,
        replay_fraction: float, max_train_records: int | None, max_val_records: int | None, gguf_type: str, lora_outtype: str, comparison: dict,
        promote: bool, compression: dict | None = None, **knobs) -> Artifact:
    spec = domain_from(domain)
    comparison = plain(comparison)
    if spec.lora_rank is None:
        raise ConfigError(f"conf/domain/{spec.name}.yaml: lora_rank is null — the {spec.name} domain carries no modifier")
    settings = settings_from(ctx.stage, knobs)
    if not 0 <= replay_fraction < 1:
        raise ConfigError(f"conf/stage/modifier.yaml: run.replay_fraction={replay_fraction} must be in [0, 1)")
    student = student_ref(ctx, model)
    base = ctx.model_input(student)
    check_targets(Path(base.source), settings.target_modules or ctx.model.lora_target_modules)
    base_gguf = gguf_of(ctx, student, gguf_type)
    data = cascade_of(ctx, dataset, spec.name)
    targeted = read_records(data.file("train.jsonl"))[:max_train_records]
    _, val = dataset_split(ctx, data.ref, "val", max_val_records)
    fit_inputs = {"model": base.identity, "dataset": data}
    train = targeted
    if replay_dataset and replay_fraction > 0:
        replay_artifact, replay = dataset_split(ctx, replay_dataset, "train", None)
        fit_inputs["replay"] = replay_artifact
        train = with_replay(targeted, replay, replay_fraction, settings.seed)

    fitter = fit_context(ctx)
    fit = fitter.up_to_date(fit_inputs) or finetune(
        fitter, student, train, val, fit_inputs, settings, merge=False,
        extra={"domain": spec.name, "targeted_records": len(targeted), "replayed_records": len(train) - len(targeted)})
    inputs = {"fit": fit, "base_gguf": base_gguf}
    previous = ctx.up_to_date(inputs)
    result = previous or _package(ctx, spec, settings.lora_rank, student, base, base_gguf, fit, data, inputs,
                                  lora_outtype, comparison, len(targeted), len(train) - len(targeted),
                                  plain(compression) or {})
    if promote:
        promote_if_passed(ctx.store, result, spec.name)
    return result


def promote_if_passed(store, modifier: Artifact, domain: str) -> bool:
    """`promoted:modifier-<domain>` -> this artifact only when its comparison passed; the previous one stays otherwise."""
    if modifier.metrics.get("gate_passed"):
        store.promote(modifier, f"modifier-{domain}")
        log.info("promoted %s as promoted:modifier-%s", modifier.ref, domain)
        return True
    reasons = modifier.manifest.get("verdict", {}).get("reasons", ["no comparison was made"])
    log.warning("modifier %s (%s) not promoted: %s", domain, modifier.ref, "; ".join(reasons))
    return False


def headline(domain: str, rank: int, lora_mb: float, metrics: dict, result: dict | None) -> list[str]:
    """The pipeline report's lines: the adapter's size, its data and fit, and (when compared) its gain."""
    lines = [f"{domain} r={rank}: GGUF LoRA {lora_mb:.2f} MB, {metrics['cascade_records']} cascade "
             f"+ {metrics['train_records'] - metrics['cascade_records']} replayed records"]
    if metrics.get("val_loss") is not None and metrics.get("val_loss_untrained") is not None:
        lines.append(f"cascade val loss {metrics['val_loss_untrained']:.3f} -> {metrics['val_loss']:.3f}")
    if result is not None:
        own = result["own"]["paired"]
        lines.append(f"own Δ{own['difference']:+.3f} [{own['low']:+.3f}, {own['high']:+.3f}] n={own['n']}")
    return lines


def _package(ctx, spec, rank, student, base, base_gguf, fit, data, inputs, lora_outtype, settings, targeted, replayed,
             compression):
    with ctx.create_artifact(inputs) as out:
        shutil.copytree(fit.path / "adapter", out.dir / "adapter")
        lora = convert_lora(out.dir / "adapter", Path(base.source), out.dir / "lora" / "adapter.gguf", converter_dir(),
                            lora_outtype)
        adapter_mb, lora_mb = size_mb(out.dir / "adapter" / "adapter_model.safetensors"), size_mb(lora)
        if compression.get("rank"):  # the seeds' 3H: SVD rank reduction of B·A + zstd (adapter.gguf stays as trained)
            out.metrics.update(compressed_lora(out.dir / "adapter", Path(base.source), out.dir / "lora", converter_dir(),
                                               int(compression["rank"]), lora_outtype, int(compression.get("level", 19))))
        result, verdict = None, None
        if settings.get("enabled", True):
            result = compare.compare(base_gguf, lora, list(spec.eval_tasks), verifier_from(spec.verifier),
                                     int(settings["own_items"]), dict(settings.get("other_tasks") or {}),
                                     dict(settings.get("max_tokens") or {}), ctx.hardware.threads)
            verdict = compare.verdict(result, settings.get("min_gain"), settings.get("max_drop"))
            (out.dir / "comparison.json").write_text(json.dumps(result, indent=2))
            compare.plot(result, out.dir / "comparison.png", f"modifier {spec.name} vs base ({base_gguf.name})")
            own = result["own"]["paired"]
            out.metrics.update({"own/difference": own["difference"], "own/low": own["low"], "own/high": own["high"],
                                "own/p_value": own["p_value"], "own/n": own["n"],
                                "own/base": result["own"]["base"]["value"],
                                "own/modifier": result["own"]["modifier"]["value"], "gate_passed": int(verdict[0])})
            for task, other in result["others"].items():
                out.metrics.update({f"{task}/difference": other["paired"]["difference"],
                                    f"{task}/low": other["paired"]["low"], f"{task}/high": other["paired"]["high"],
                                    f"{task}/n": other["paired"]["n"]})
            out.extra["verdict"] = {"passed": verdict[0], "reasons": verdict[1], "min_gain": settings.get("min_gain"),
                                    "max_drop": settings.get("max_drop")}
        base_ref = base.artifact.ref if base.artifact is not None else base.source
        funnel = (data.path / "funnel.md").read_text() if (data.path / "funnel.md").is_file() else ""
        card_data = {"train_records": targeted + replayed, "dataset": data.ref, "replayed_records": replayed,
                     "replay": fit.manifest.get("inputs") and next((i.get("artifact") for i in fit.manifest["inputs"]
                                                                    if i["name"] == "replay"), None)}
        (out.dir / "card.md").write_text(render_card(spec, rank, base_ref, str(base_gguf), adapter_mb, lora_mb, card_data,
                                                     funnel, result, verdict))
        out.metrics.update({"adapter_mb": lora_mb, "peft_adapter_mb": adapter_mb, "rank": rank,
                            "train_records": targeted + replayed, "cascade_records": targeted,
                            "mined_items": data.metrics.get("mined_items"),
                            "val_loss": fit.metrics.get("val_loss"),
                            "val_loss_untrained": fit.metrics.get("val_loss_untrained")})
        out.extra["modifier"] = {"domain": spec.name, "rank": rank, "base_model": base_ref, "base_gguf": str(base_gguf),
                                 "fit": fit.ref, "dataset": data.ref}
        out.extra["headline"] = headline(spec.name, rank, lora_mb, out.metrics, result)
    return out.artifact
