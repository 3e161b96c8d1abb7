"""`python train.py stage=curate`: sources -> filters -> decontamination -> dedup -> mix -> dataset artifact.

Streaming: rows are read, screened and spooled to disk one at a time; dedup re-reads the spool and
holds only hashes and signatures; the final pass streams survivors into `train.jsonl`/`val.jsonl`.
Artifact files: train.jsonl, val.jsonl, quarantine.jsonl, report.json, distributions.png.
"""

import hashlib
import json
import logging
import os
import tempfile
from collections import defaultdict
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.data.decontam import ContaminationIndex, eval_sets
from cogumi.data.dedup import MinHashParams, deduplicate
from cogumi.data.filters import QualityHeuristic
from cogumi.data.normalise import MalformedRow, normalise, record_text
from cogumi.data.report import CurationReport
from cogumi.data.screen import Screens
from cogumi.data.sources import check_available, read_rows, source_specs
from cogumi.errors import ConfigError
from cogumi.stage import StageContext

log = logging.getLogger(__name__)


def _split_of(record_id: str, seed: int, val_fraction: float) -> str:
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") / 2**64 < val_fraction else "train"


def _check(val_fraction, length, quality, dedup, judge):
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"stage.run.val_fraction={val_fraction}: must be in [0, 1)")
    if not 0 < length["min_tokens"] <= length["max_tokens"]:
        raise ConfigError(f"stage.run.length={length}: need 0 < min_tokens <= max_tokens")
    if not 0 <= quality["min_score"] <= 10:
        raise ConfigError(f"stage.run.quality.min_score={quality['min_score']}: the scale is 0-10")
    if not 0 < dedup["threshold"] < 1 or dedup["num_perm"] < 16 or dedup.get("index") not in ("datasketch", "compact"):
        raise ConfigError(f"stage.run.dedup={dedup}: threshold in (0, 1), num_perm >= 16, index datasketch|compact")
    if judge["enabled"] and not 0 <= judge["min_score"] <= 10:
        raise ConfigError(f"stage.run.judge.min_score={judge['min_score']}: the scale is 0-10")


def _read_and_screen(specs, screens: Screens, report: CurationReport, spool, quarantine, batch_size=256):
    """Every row: quarantined, removed by a screen, or spooled. Returns per-kept (source, quality)."""
    heuristic, kept, pending = QualityHeuristic(), [], []

    def flush():
        for record in screens.screen_batch(pending, report, heuristic):
            spool.write(json.dumps(record, ensure_ascii=False) + "\n")
            kept.append((record["metadata"]["source"]["name"], record["metadata"]["quality_score"]))
        pending.clear()

    for spec in specs:
        check_available(spec)
        counts = report.per_source[spec.name]
        for raw in read_rows(spec):
            report.rows_in += 1
            counts["in"] += 1
            reason = raw.error
            if reason is None:
                try:
                    record = normalise(raw.row, spec, raw.file, raw.line, counts["in"])
                except MalformedRow as err:
                    reason = str(err)
            if reason is not None:
                report.quarantined += 1
                counts["quarantined"] += 1
                raw_text = raw.raw or json.dumps(raw.row, ensure_ascii=False, default=str)[:500]
                quarantine.write(json.dumps({"source": spec.name, "file": raw.file, "line": raw.line,
                                             "reason": reason, "raw": raw_text}, ensure_ascii=False) + "\n")
                continue
            if screens.screen_text(record, report) is None:
                pending.append(record)
                if len(pending) >= batch_size:
                    flush()
        flush()
    return kept


def _mix_quotas(kept: list[tuple[str, float]], weights: dict, mix_max_records: int | None) -> set:
    """Indices dropped so each source keeps at most its weight's share of `mix_max_records` (lowest quality first)."""
    if mix_max_records is None or len(kept) <= mix_max_records:
        return set()
    by_source = defaultdict(list)
    for index, (source, quality) in enumerate(kept):
        by_source[source].append((quality, -index))
    total_weight = sum(weights[s] for s in by_source)
    quotas = {s: int(mix_max_records * weights[s] / total_weight) for s in by_source}
    spare = mix_max_records - sum(min(quotas[s], len(v)) for s, v in by_source.items())
    for source in sorted(by_source, key=lambda s: -weights[s]):  # unused share goes to sources with more rows
        extra = min(spare, max(0, len(by_source[source]) - quotas[source]))
        quotas[source] += extra
        spare -= extra
    dropped = set()
    for source, items in by_source.items():
        for quality, neg_index in sorted(items, reverse=True)[quotas[source]:]:
            dropped.add(-neg_index)
    return dropped


def run(ctx: StageContext, sources: dict, tokenizer: str, val_fraction: float, seed: int, language: dict,
        length: dict, quality: dict, judge: dict, teacher, pii: dict, offensive_terms: list, dedup: dict,
        decontaminate: dict, mix_max_records: int | None = None, workers: int | None = None) -> Artifact:
    from cogumi.models.loader import load_tokenizer

    _check(val_fraction, length, quality, dedup, judge)
    specs = source_specs(sources)
    sets = eval_sets(decontaminate.get("sets")) if decontaminate.get("enabled", True) else []
    model_input = ctx.model_input(tokenizer)
    inputs = {f"source:{s.name}": s.origin for s in specs} | {f"eval:{e.name}": e.path for e in sets}
    inputs["tokenizer"] = model_input.identity
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    workers = workers or os.cpu_count() or 1
    contamination = ContaminationIndex(sets, decontaminate["ngram"], decontaminate["min_overlap"]) if sets else None
    with ctx.create_artifact(inputs) as out, tempfile.TemporaryDirectory(prefix="curate-") as tmp:
        report = CurationReport()
        if contamination is not None:
            report.decontamination = contamination.stats
        judge_obj = None
        if judge["enabled"]:
            from cogumi.data.judge import Judge

            judge_obj = Judge(teacher, ledger_path=out.dir / "teacher_ledger.jsonl", max_items=judge.get("max_items"),
                              constrained=judge.get("constrained", False), seed=seed)
        screens = Screens.build(load_tokenizer(model_input.source), language, length, quality, pii, offensive_terms,
                                contamination, judge_obj, judge.get("min_score"), getattr(teacher, "name", "none"))
        spool_path = Path(tmp) / "screened.jsonl"
        with open(spool_path, "w") as spool, open(out.dir / "quarantine.jsonl", "w") as quarantine:
            kept = _read_and_screen(specs, screens, report, spool, quarantine)

        def spooled():
            with open(spool_path) as lines:
                for line in lines:
                    yield json.loads(line)

        dups = deduplicate(lambda: ((record_text(r), r["metadata"]["quality_score"]) for r in spooled()),
                           MinHashParams(**dedup), workers=workers)
        survivors = [(s, q) if i not in dups.exact_removed and i not in dups.near_removed else (None, q)
                     for i, (s, q) in enumerate(kept)]
        weights = {s.name: s.weight for s in specs}
        mixed_out = _mix_quotas([(s, q) for s, q in survivors if s is not None], weights, mix_max_records)
        files = {split: open(out.dir / f"{split}.jsonl", "w") for split in ("train", "val")}
        try:
            rank = 0
            for index, record in enumerate(spooled()):
                source = record["metadata"]["source"]["name"]
                if index in dups.exact_removed or index in dups.near_removed:
                    reason = "exact_duplicate" if index in dups.exact_removed else "near_duplicate"
                    report.remove(source, reason, record["id"], f"kept item #{dups.kept_instead.get(index)}")
                    continue
                rank += 1
                if rank - 1 in mixed_out:
                    report.remove(source, "mix_cap", record["id"], "over the source's share")
                    continue
                split = _split_of(record["id"], seed, val_fraction)
                files[split].write(json.dumps(record, ensure_ascii=False) + "\n")
                report.keep(record, split)
        finally:
            for f in files.values():
                f.close()
        if judge_obj is not None:
            report.extra["judge"] = judge_obj.summary()
        data = report.write(out.dir)
        out.metrics.update({"rows_in": data["rows_in"], "kept": data["kept"], "quarantined": data["quarantined"],
                            "train": data["splits"].get("train", 0), "val": data["splits"].get("val", 0),
                            **{f"removed_{k}": v for k, v in data["removed"].items()}})
        out.extra["sources"] = {s.name: {"origin": s.origin, "distribution": s.distribution, "format": s.format}
                                for s in specs}
        log.info("curate: %d in, %d kept (train %d / val %d), %d quarantined, removed %s", data["rows_in"],
                 data["kept"], data["splits"].get("train", 0), data["splits"].get("val", 0), data["quarantined"],
                 {k: v for k, v in data["removed"].items() if v})
    return out.artifact
