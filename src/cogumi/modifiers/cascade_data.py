"""`train.py stage=cascade domain=<d>`: a domain's training data from the student's failures, via the teacher cascade.

Setup → mine → cascade → artifact, top to bottom: the student (a GGUF through llama.cpp) answers
`mine_items` items of the mining half of the domain's tasks greedily; the ones it gets wrong (by the
domain's verifier) and this domain's unanswered feedback lines go through the tiers in order, each
tier seeing only what the earlier ones left unsolved; every kept answer passed the verifier.
Answered feedback lines that pass the verifier (or came from a teacher route) are kept as they are.
The items the student failed are clustered (MiniLM + KMeans) and the funnel is also told per cluster;
optionally (`augment.per_cluster` > 0, an endpoint teacher) a teacher writes new items like each
failure cluster, kept only when they pass the verifier (LLM2LLM; off offline).
"""

import json
import logging
import random
import time
from pathlib import Path

from tqdm.auto import tqdm

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.evaluate import offline_data
from cogumi.evaluate.selfconsistency import Sampler
from cogumi.modifiers.base_model import gguf_of, student_ref
from cogumi.modifiers.domain import check_tiers, domain_from, plain
from cogumi.modifiers.failure_clusters import cluster_failures, cluster_funnel, cluster_table
from cogumi.modifiers.feedback import read_feedback
from cogumi.modifiers.funnel import funnel_table, plot_funnel
from cogumi.modifiers.items import TASKS, interleaved, load_items
from cogumi.modifiers.verifiers import REPLY_STOPS, verifier_from
from cogumi.stage import StageContext
from cogumi.teachers.augment import augment_clusters
from cogumi.teachers.cascade import FunnelRow, KeptAnswer, run_cascade
from cogumi.teachers.client import TeacherClient
from cogumi.teachers.tiers import TierUnavailable, build_tier, teacher_spec

log = logging.getLogger(__name__)



def student_pass(sampler: Sampler, items: list, verifier, max_tokens: int, stop: list[str], seed: int):
    """(items the student gets wrong greedily, funnel row of that pass)."""
    row, failures = FunnelRow("student (greedy)"), []
    for item in tqdm(items, desc="student pass", unit="item"):
        answer = sampler.sample(sampler.as_chat(item.prompt), 1, 0.0, max_tokens, stop, seed)[0]
        row.attempted += 1
        row.tokens += sampler.tokens(answer)
        if verifier.check(item, answer).passed:
            row.solved += 1
        else:
            failures.append(item)
    return failures, row


def headline(domain: str, mined: int, solved: int, tiers: list[dict], records: int) -> list[str]:
    """The pipeline report's lines: what was mined, what the student solved, and who answered the rest."""
    kept = ", ".join(f"{r['tier']} {r['kept']}/{r['attempted']}" for r in tiers if r["status"] == "ran")
    return [f"{domain}: {mined} mined items, student solved {solved}", f"kept {records}: {kept or 'no tier ran'}"]


def _record(domain: str, kept: KeptAnswer) -> dict:
    return {"id": f"cascade-{domain}-{kept.item.id}", "instruction": kept.item.prompt, "response": kept.answer,
            "metadata": {"domain": domain, "teacher": kept.tier, "verified": kept.verified, "task": kept.item.task,
                         "difficulty": None, "source": kept.item.source}}


def _judge_client(tiers: list[dict], out_dir: Path):
    endpoint = next((t for t in tiers if t["kind"] == "endpoint"), None)
    if endpoint is None:
        raise ConfigError("verifier kind 'judge' needs an endpoint tier to judge with")
    return TeacherClient(teacher_spec(endpoint["teacher"]), ledger_path=out_dir / "teacher_ledger.jsonl")


def _tiers(settings: list[dict], sampler, out_dir: Path, max_tokens: int, stop: list[str], seed: int):
    tiers, skipped = [], []
    for tier in settings:
        try:
            tiers.append(build_tier(tier, sampler=sampler, ledger=out_dir / "teacher_ledger.jsonl",
                                    max_tokens=max_tokens, stop=tuple(stop), seed=seed))
        except TierUnavailable as err:
            name = teacher_spec(tier["teacher"]).name if tier["kind"] == "endpoint" else tier["kind"]
            log.warning("tier %s skipped: %s", name, err)
            skipped.append(FunnelRow(name, status="unavailable"))
    return tiers, skipped


def _feedback_records(feedback, verifier, domain: str) -> tuple[list[KeptAnswer], int]:
    kept, rejected = [], 0
    for item, answer, route in feedback.answered:
        check = verifier.check(item, answer)
        if check.passed or route == "teacher":
            kept.append(KeptAnswer(item, answer.strip(), f"feedback:{route or 'user'}",
                                   check.how if check.passed else "teacher-route"))
        else:
            rejected += 1
    return kept, rejected


def augment_failures(clusters: list, settings: dict, verifier, spec, mined: list, out_dir: Path, budget: int,
                     seed: int) -> tuple[list[KeptAnswer], dict]:
    """New verified items like each failure cluster from the augment teacher ({} rows when off or unreachable)."""
    k = int(settings.get("per_cluster") or 0)
    if k <= 0 or not clusters or budget <= 0:
        return [], {}
    try:
        client = TeacherClient(teacher_spec(settings["teacher"]), ledger_path=out_dir / "teacher_ledger.jsonl",
                               timeout_s=float(settings.get("timeout_s", 120)),
                               max_retries=0 if settings.get("optional", True) else 2)
    except ConfigError as err:  # a paid teacher without its key
        if not settings.get("optional", True):
            raise
        log.warning("augmentation skipped: %s", err)
        return [], {}
    known = {item.prompt for item in mined} | {item.prompt for task in spec.eval_tasks
                                               for item in load_items(task, "gate", None)}
    kept, rows = augment_clusters(client, clusters, k, verifier, int(settings.get("examples", 3)),
                                  int(settings.get("max_tokens", 768)), known, budget,
                                  settings.get("response_format"), bool(settings.get("optional", True)), seed)
    return kept, {r.cluster: r.to_dict() for r in rows}


def augment_row(augmented: dict, teacher: str) -> dict:
    """Augmentation as a funnel row: attempted = items generated, solved = new and verified, kept."""
    rows = list(augmented.values())
    total = {key: sum(r[key] for r in rows) for key in ("generated", "duplicates", "rejected", "kept", "tokens")}
    return {"tier": f"augment:{teacher}", "status": "ran" if any(r["status"] == "ran" for r in rows) else "unavailable",
            "attempted": total["generated"], "solved": total["generated"] - total["duplicates"] - total["rejected"],
            "kept": total["kept"], "tokens": total["tokens"], "cost_usd": round(sum(r["cost_usd"] for r in rows), 6)}


def run(ctx: StageContext, domain: dict, tiers: list[dict], model: str, gguf_type: str, mine_items: int,
        max_records: int, feedback_file: str | None, val_fraction: float, seed: int = 1234,
        clusters: dict | None = None, augment: dict | None = None) -> Artifact:
    spec = domain_from(domain)
    tiers = [dict(t) for t in plain(tiers)]
    clusters, augment = plain(clusters) or {"enabled": False}, plain(augment) or {}
    check_tiers(tiers, "stage.run")
    if mine_items < 0 or max_records < 1:
        raise ConfigError(f"stage.run.mine_items={mine_items} must be >= 0 and max_records={max_records} >= 1")
    student = student_ref(ctx, model)
    gguf = gguf_of(ctx, student, gguf_type)
    feedback_path = Path(feedback_file) if feedback_file and "feedback" in spec.sources else None
    inputs = {"student": ctx.model_input(student).identity, "gguf": gguf}
    if feedback_path is not None and feedback_path.is_file():
        inputs["feedback"] = feedback_path
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    kind = spec.verifier["kind"]
    stop = REPLY_STOPS[kind]
    sampler = Sampler("gguf", str(gguf), ctx.hardware)  # threads: the hardware profile's (null = llama.cpp's default)
    items = interleaved(list(spec.eval_tasks), "mine", mine_items) if "mining" in spec.sources and mine_items else []
    with ctx.create_artifact(inputs) as out:
        verifier = verifier_from(spec.verifier, _judge_client(tiers, out.dir) if kind == "judge" else None)
        failures, student_row = student_pass(sampler, items, verifier, spec.max_tokens, stop, seed)
        feedback = read_feedback(feedback_path, spec.name) if feedback_path is not None else None
        from_feedback, feedback_rejected = _feedback_records(feedback, verifier, spec.name) if feedback else ([], 0)
        unsolved_in = failures + (feedback.unanswered if feedback else [])
        built, skipped = _tiers(tiers, sampler, out.dir, spec.max_tokens, stop, seed)
        kept, funnel, unsolved = run_cascade(unsolved_in, built, verifier, max_records - len(from_feedback))
        kept = from_feedback[:max_records] + kept
        groups, silhouettes, started = [], {}, time.perf_counter()
        if clusters.get("enabled") or augment.get("per_cluster"):  # augmentation asks per failure cluster
            groups, silhouettes = cluster_failures(unsolved_in, int(clusters.get("k_min", 2)),
                                                   int(clusters.get("k_max", 8)), seed)
        cluster_s = time.perf_counter() - started
        new, augmented = augment_failures(groups, augment, verifier, spec, items, out.dir, max_records - len(kept),
                                          seed)
        kept += new
        cluster_rows = cluster_funnel(groups, funnel, unsolved, augmented or None)
        rows = [student_row.to_dict()] + [r.to_dict() for r in funnel + skipped]
        if augmented:
            rows.append(augment_row(augmented, teacher_spec(augment["teacher"]).name))
        records = [_record(spec.name, k) for k in kept]
        random.Random(seed).shuffle(records)
        n_val = max(1, round(len(records) * val_fraction)) if len(records) > 1 and val_fraction > 0 else 0
        for split, part in (("train", records[n_val:]), ("val", records[:n_val])):
            (out.dir / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
        (out.dir / "unsolved.jsonl").write_text("".join(json.dumps({"id": i.id, "prompt": i.prompt}) + "\n"
                                                        for i in unsolved))
        if feedback is not None and feedback.quarantined:
            (out.dir / "feedback_quarantine.jsonl").write_text(
                "".join(json.dumps(q) + "\n" for q in feedback.quarantined))
        table = funnel_table(rows)
        (out.dir / "funnel.md").write_text(table)
        if cluster_rows:
            (out.dir / "clusters.json").write_text(json.dumps({"silhouette": silhouettes, "clusters": cluster_rows},
                                                              indent=2))
        if cluster_rows:
            table += f"\nFailure clusters ({len(cluster_rows)}):\n\n{cluster_table(cluster_rows)}"
        (out.dir / "table.md").write_text(table)  # the pipeline report shows each artifact's table.md
        plot_funnel(rows, out.dir / "funnel.png", f"{spec.name}: {len(items)} mined items, {len(records)} kept")
        out.metrics.update({"mined_items": len(items), "student_solved": student_row.solved,
                            "failures": len(failures), "records": len(records),
                            "train_records": len(records) - n_val, "val_records": n_val,
                            "unsolved": len(unsolved), "feedback_kept": len(from_feedback),
                            "feedback_rejected": feedback_rejected,
                            "feedback_quarantined": len(feedback.quarantined) if feedback else 0,
                            "cost_usd": round(sum(r["cost_usd"] for r in rows), 6),
                            "failure_clusters": len(cluster_rows), "cluster_s": round(cluster_s, 2),
                            "augmented_kept": len(new)})
        out.metrics.update({f"kept/{r['tier']}": r["kept"] for r in rows[1:]})
        out.extra["headline"] = headline(spec.name, len(items), student_row.solved, rows[1:], len(records))
        out.extra["cascade"] = {"domain": spec.name, "verifier": spec.verifier, "funnel": rows, "tiers": tiers,
                                "student_gguf": str(gguf)}
        out.extra["clusters"] = [{k: v for k, v in r.items() if k != "item_ids"} for r in cluster_rows]
        out.extra["splits"] = {"mined": [offline_data.source_record(TASKS[t][0], "mine") for t in spec.eval_tasks],
                               "gated": [offline_data.source_record(TASKS[t][0], "gate") for t in spec.eval_tasks]}
        log.info("cascade %s: %d mined, %d failures, %d kept\n%s", spec.name, len(items), len(failures),
                 len(records), table)
    return out.artifact
