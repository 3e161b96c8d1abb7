"""Served feedback (`outputs/feedback/feedback.jsonl`, written by the server) as cascade input.

One JSON object a line: {time, domain, prompt, rejected, answer, answer_route}. A line of this
domain whose answer passes the verifier (or came from a teacher route) becomes a training pair; one
without an answer enters the cascade as an unsolved item. A malformed line is reported with its
line number and quarantined; it never stops the stage.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.modifiers.items import DomainItem

log = logging.getLogger(__name__)

REQUIRED = {"prompt": str, "rejected": str}
OPTIONAL = {"time": str, "domain": (str, type(None)), "answer": (str, type(None)), "answer_route": (str, type(None))}


@dataclass
class FeedbackLines:
    answered: list[tuple[DomainItem, str, str]] = field(default_factory=list)  # (item, answer, answer_route)
    unanswered: list[DomainItem] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)  # {line, reason, text}
    other_domains: int = 0


def _problem(record) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind) or not record[key].strip():
            return f"`{key}` missing or not a non-empty string"
    for key, kinds in OPTIONAL.items():
        if key in record and not isinstance(record[key], kinds):
            return f"`{key}` has type {type(record[key]).__name__}"
    return None


def read_feedback(path: Path, domain: str) -> FeedbackLines:
    """This domain's feedback lines, split into answered / unanswered / quarantined."""
    found = FeedbackLines()
    if not path.is_file():
        return found
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                found.quarantined.append({"line": number, "reason": f"not JSON ({err.msg})", "text": line[:500]})
                continue
            if (problem := _problem(record)) is not None:
                found.quarantined.append({"line": number, "reason": problem, "text": line[:500]})
                continue
            if record.get("domain") != domain:
                found.other_domains += 1
                continue
            item = DomainItem(f"feedback/{number}", None, record["prompt"], None,
                              source={"file": str(path), "line": number, "time": record.get("time")})
            if record.get("answer"):
                found.answered.append((item, record["answer"], record.get("answer_route") or ""))
            else:
                found.unanswered.append(item)
    for q in found.quarantined:
        log.warning("%s:%d quarantined: %s", path, q["line"], q["reason"])
    return found
