"""`evaluate.py stage=failures`: where the student goes wrong, grouped into named clusters.

Runs the suite on the mining half (a cached `suite` artifact), keeps the wrong answers (ground
truth), optionally has a teacher judge open-ended answers against the reference (1–10 ratings),
embeds the failed questions with all-MiniLM-L6-v2, clusters them with KMeans (k by silhouette),
names each cluster (teacher, or TF-IDF terms offline) and plots a 2-D projection.
"""

import json
import logging
from collections import Counter

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.evaluate import clustering, judge, suite
from cogumi.evaluate.harness import LOGLIKELIHOOD_TASKS
from cogumi.stage import StageContext

log = logging.getLogger(__name__)

# The field of each set's document that states the problem (what a failure is about).
QUESTION_FIELD = {"cogumi_hellaswag": "ctx", "cogumi_mbpp": "text", "cogumi_humaneval": "prompt"}


def question_of(record: dict) -> str:
    doc = record.get("doc") or {}
    return str(doc.get(QUESTION_FIELD.get(record["task"], "question")) or record.get("prompt", ""))


def reference_of(record: dict) -> str:
    doc = record.get("doc") or {}
    if record["task"] == "cogumi_gsm8k":
        return doc.get("solution", record["target"])
    if record["task"] == "cogumi_truthfulqa":
        return (doc.get("answers") or [record["target"]])[0]
    return record["target"]


def _teacher(ctx: StageContext, out_dir):
    from hydra.utils import instantiate

    from cogumi.teachers.client import TeacherClient

    spec = instantiate(ctx.config["teacher"])
    return TeacherClient(spec, ledger_path=out_dir / "teacher_ledger.jsonl")


def judge_failures(client, failures: list[dict], limit: int) -> tuple[list[dict], dict]:
    open_ended = [f for f in failures if f["task"] not in LOGLIKELIHOOD_TASKS][:limit]
    verdicts = [judge.judge(client, question_of(f), f["answer"], reference_of(f)) for f in open_ended]
    rows = [{"task": f["task"], "id": f["id"], "outcome": v.outcome, "student": v.student,
             "reference": v.reference, "raw": v.raw} for f, v in zip(open_ended, verdicts)]
    return rows, judge.tally(verdicts)


def _teacher_names(client, texts, labels, fallback: dict) -> dict:
    """Teacher-given cluster names; the TF-IDF name stays where the teacher fails or says nothing."""
    from cogumi.teachers.client import TeacherError

    names = dict(fallback)
    for c in names:
        try:
            names[c] = clustering.teacher_label(client, [t for t, lab in zip(texts, labels) if lab == c]) or names[c]
        except TeacherError as err:
            log.warning("teacher labelling failed (%s): keeping TF-IDF names", err)
            break
    return names


def cluster_failures(failures: list[dict], k_min: int, k_max: int, seed: int):
    texts = [question_of(f) for f in failures]
    vectors = clustering.embed(texts)
    k, silhouettes = clustering.choose_k(vectors, k_min, k_max, seed)
    return texts, vectors, clustering.cluster(vectors, k, seed), silhouettes


def run(ctx: StageContext, model: str, kind: str, tasks: list[str], limit: int | None, limits: dict | None,
        part: str, max_gen_toks: int | None, k_min: int, k_max: int, label_with_teacher: bool,
        judge_open_ended: bool, judge_limit: int, examples_per_cluster: int, seed: int = 1234,
        gguf_type: str | None = None) -> Artifact:
    if part == "gate":
        raise ConfigError("stage.run.part=gate: failures are mined on the mining half (mine), never the gates' half")
    if k_min < 2 or k_max < k_min:
        raise ConfigError(f"stage.run.k_min={k_min}, k_max={k_max}: need 2 <= k_min <= k_max")
    evaluated = suite.run_cached(ctx, model=model, kind=kind, tasks=list(tasks), limit=limit,
                                 limits=limits, part=part, max_gen_toks=max_gen_toks, seed=seed, gguf_type=gguf_type)
    inputs = {"suite": evaluated}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    records = suite.read_samples(evaluated)
    failures = [r for r in records if not r["correct"]]
    if len(failures) < 3:
        raise ConfigError(f"only {len(failures)} wrong answers in {evaluated.ref}: raise stage.run.limit")
    texts, vectors, labels, silhouettes = cluster_failures(failures, k_min, k_max, seed)
    with ctx.create_artifact(inputs) as out:
        client = _teacher(ctx, out.dir) if (label_with_teacher or judge_open_ended) else None
        names = clustering.tfidf_labels(texts, labels)
        if label_with_teacher:
            names = _teacher_names(client, texts, labels, names)
        clusters = []
        for c in sorted(names):
            members = [f for f, lab in zip(failures, labels) if lab == c]
            clusters.append({"cluster": int(c), "label": names[c], "size": len(members),
                             "tasks": dict(Counter(m["task"] for m in members)),
                             "examples": [{"task": m["task"], "id": m["id"], "question": question_of(m)[:500],
                                           "answer": m["answer"][:300], "reference": reference_of(m)[:300]}
                                          for m in members[:examples_per_cluster]]})
        (out.dir / "clusters.json").write_text(json.dumps(clusters, indent=2))
        with (out.dir / "failures.jsonl").open("w", encoding="utf-8") as fh:
            for f, lab in zip(failures, labels):
                fh.write(json.dumps({k: v for k, v in f.items() if k != "doc"} | {"cluster": int(lab)}) + "\n")
        clustering.plot_projection(out.dir / "projection.png", vectors, labels, names)
        if judge_open_ended:
            rows, tally = judge_failures(client, failures, judge_limit)
            (out.dir / "judge.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            out.metrics.update({f"judge/{k}": v for k, v in tally.items()})
        if client is not None:
            out.extra["teacher"] = client.summary()
        out.metrics.update({"items": len(records), "failures": len(failures), "clusters": len(clusters),
                            "silhouette": round(silhouettes.get(len(clusters), 0.0), 4)})
        out.metrics.update({f"failure_rate/{t}": round(sum(not r["correct"] for r in records if r["task"] == t)
                                                       / max(1, sum(r["task"] == t for r in records)), 4)
                            for t in tasks})
        out.extra["clusters"] = [{k: c[k] for k in ("cluster", "label", "size", "tasks")} for c in clusters]
        out.extra["data"] = evaluated.manifest.get("data", [])
        for c in clusters:
            log.info("cluster %d (%d failures, %s): %s", c["cluster"], c["size"], c["tasks"], c["label"])
    return out.artifact
