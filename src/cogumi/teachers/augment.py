"""LLM2LLM-style augmentation: a teacher writes k new items like each cluster of the student's failures.

Only failure clusters are sent (the caller clusters what the student got wrong, never what it solved);
per cluster the teacher sees a few of its items with their reference answers and writes `k` new
ones as JSON ({"items": [{"prompt", "answer"}]}). A new item has no key, so its answer goes through
the domain's verifier as a keyless item (its form: a parseable call, a number, code that compiles, a
letter; or the judge's rubric), and an item repeating a known prompt (mined or gating half) is
dropped. Only what passes is returned, as `augment:<teacher>` answers; the ledger prices every call.
"""

import json
import logging
from dataclasses import asdict, dataclass, field

from cogumi.modifiers.items import DomainItem
from cogumi.teachers.cascade import KeptAnswer
from cogumi.teachers.client import TeacherError

log = logging.getLogger(__name__)

INSTRUCTION = ("Here are {n} tasks a small model answered wrongly, each with its correct answer.\n\n{examples}\n\n"
               "Write {k} new tasks of the same kind and format (different details, not copies), each with its "
               "correct answer in the same style. Reply with JSON only: "
               '{{"items": [{{"prompt": "...", "answer": "..."}}]}}')


@dataclass
class AugmentRow:
    """What augmentation did for one cluster."""

    cluster: int
    asked: int  # new items requested
    examples: list[str] = field(default_factory=list)  # ids of the failures shown to the teacher
    generated: int = 0  # parsed (prompt, answer) pairs
    duplicates: int = 0  # prompt already known (mined, gating or generated before)
    rejected: int = 0  # failed the verifier
    kept: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    status: str = "ran"  # ran | unavailable

    def to_dict(self) -> dict:
        return {**asdict(self), "cost_usd": round(self.cost_usd, 6)}


def request_text(examples: list[DomainItem], k: int) -> str:
    listed = "\n\n".join(f"Task {i + 1}:\n{item.prompt}"
                         + (f"\nCorrect answer:\n{item.reference}" if item.reference else "")  # keyless feedback
                         for i, item in enumerate(examples))
    return INSTRUCTION.format(n=len(examples), examples=listed, k=k)


def parse_items(text: str) -> list[tuple[str, str]]:
    """Every complete {"prompt", "answer"} object in the reply, even inside a cut-off list."""
    decoder, found, start = json.JSONDecoder(), [], text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("prompt"), str) and isinstance(value.get("answer"), str):
            found.append((value["prompt"].strip(), value["answer"].strip()))
        start = text.find("{", start + 1)
    return [(p, a) for p, a in found if p and a]


def augment_clusters(client, clusters: list, k: int, verifier, examples: int = 3, max_tokens: int = 768,
                     known_prompts: set[str] = frozenset(), max_records: int | None = None,
                     response_format: dict | None = None, optional: bool = True,
                     seed: int = 0) -> tuple[list[KeptAnswer], list[AugmentRow]]:
    """(verified new answers, one row per cluster). `clusters`: FailureCluster-like (id, items)."""
    seen, kept, rows = {p.strip() for p in known_prompts}, [], []
    for c in clusters:
        shown = [item for item in c.items if item.reference][:examples] or c.items[:examples]
        row = AugmentRow(c.id, k, [item.id for item in shown])
        rows.append(row)
        if max_records is not None and len(kept) >= max_records:
            row.asked = 0
            continue
        extra = {"response_format": response_format} if response_format else {}
        try:
            reply = client.chat([{"role": "user", "content": request_text(shown, k)}], max_tokens=max_tokens,
                                temperature=0.7, seed=seed + c.id, **extra)
        except TeacherError as err:
            if not optional:
                raise
            log.warning("augmentation teacher unavailable (%s): no new items", err)
            row.status, row.asked = "unavailable", 0
            rows += [AugmentRow(o.id, 0, status="unavailable") for o in clusters[len(rows):]]
            break
        row.tokens, row.cost_usd = reply.input_tokens + reply.output_tokens, reply.cost_usd
        for j, (prompt, answer) in enumerate(parse_items(reply.text)[:k]):
            row.generated += 1
            if prompt in seen:
                row.duplicates += 1
                continue
            seen.add(prompt)
            item = DomainItem(f"augment/{c.id}/{j}", None, prompt, None, answer,
                              {"augmented_from": {"cluster": c.id, "examples": row.examples}})
            check = verifier.check(item, answer)
            if not check.passed:
                row.rejected += 1
                continue
            if max_records is None or len(kept) < max_records:
                kept.append(KeptAnswer(item, answer, f"augment:{client.spec.name}", check.how))
                row.kept += 1
        log.info("augment cluster %d: asked %d, generated %d, kept %d", c.id, row.asked, row.generated, row.kept)
    return kept, rows
