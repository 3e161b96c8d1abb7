"""Teacher judge with the seeds' rubric: accuracy 0-3, completeness 0-2, coherence 0-2, helpfulness 0-3.

Any OpenAI-compatible endpoint (conf/teacher/*.yaml) through `TeacherClient`; the score is the sum
(0-10). A reply the parser cannot read leaves the item with its heuristic score (counted).
"""

import json
import logging
import re

log = logging.getLogger(__name__)

RUBRIC = {"accuracy": 3, "completeness": 2, "coherence": 2, "helpfulness": 3}

DOMAINS = ("general", "code", "math", "reasoning", "automation")  # the conf/domain options

_SYSTEM = (
    "You grade an assistant's answer to a user's request. Reply with JSON only, no prose: "
    '{"accuracy": 0-3, "completeness": 0-2, "coherence": 0-2, "helpfulness": 0-3, "domain": "..."}. '
    "accuracy: facts and reasoning are correct; completeness: the whole request is answered; "
    "coherence: clear and well organised; helpfulness: useful to the user as written; "
    f"domain: one of {', '.join(DOMAINS)}.")


# The rubric as a JSON schema; llama.cpp's server turns `{"type": "json_object", "schema": ...}` into a
# grammar, so even a small local judge answers in the right shape (`judge.constrained: true`).
RUBRIC_SCHEMA = {"type": "object", "required": [*RUBRIC, "domain"],
                 "properties": {**{k: {"type": "integer", "minimum": 0, "maximum": top} for k, top in RUBRIC.items()},
                                "domain": {"type": "string", "enum": list(DOMAINS)}}}


def judge_messages(instruction: str, response: str, max_chars: int = 3000) -> list[dict]:
    return [{"role": "system", "content": _SYSTEM},
            {"role": "user", "content": f"Request:\n{instruction[:max_chars]}\n\nAnswer:\n{response[:max_chars]}\n\n"
                                        "Scores as JSON:"}]


def parse_domain(text: str) -> str | None:
    """The judge's domain label, when it gave one of the known domains."""
    match = re.search(r'"domain"\s*:\s*"(\w+)"', text)
    return match.group(1) if match and match.group(1) in DOMAINS else None


def parse_scores(text: str) -> dict | None:
    """The four rubric scores, clamped to their ranges; None unless all four are present."""
    scores = {}
    try:
        found = json.loads(text[text.index("{"): text.rindex("}") + 1])
        if isinstance(found, dict):
            scores = {k: found.get(k) for k in RUBRIC}
    except ValueError:
        pass
    for key in RUBRIC:  # fall back to `key: number` anywhere in the reply
        if not isinstance(scores.get(key), (int, float)):
            match = re.search(rf"{key}\W{{0,4}}(\d+(?:\.\d+)?)", text, re.I)
            scores[key] = float(match.group(1)) if match else None
    if any(v is None for v in scores.values()):
        return None
    return {k: max(0.0, min(float(v), RUBRIC[k])) for k, v in scores.items()}


class Judge:
    """Scores records with a teacher; `max_items` bounds the calls (the rest keep heuristic scores)."""

    def __init__(self, spec, ledger_path=None, max_items: int | None = None, max_tokens: int = 64, seed: int = 0,
                 constrained: bool = False):
        from cogumi.teachers.client import TeacherClient

        self.client = TeacherClient(spec, ledger_path=ledger_path)
        self.max_items, self.max_tokens, self.seed = max_items, max_tokens, seed
        self.extra = {"response_format": {"type": "json_object", "schema": RUBRIC_SCHEMA}} if constrained else {}
        self.judged = self.unparsed = 0

    def score(self, record: dict) -> float | None:
        if self.max_items is not None and self.judged + self.unparsed >= self.max_items:
            return None
        reply = self.client.chat(judge_messages(record["instruction"], record["response"]),
                                 max_tokens=self.max_tokens, temperature=0.0, seed=self.seed, **self.extra)
        scores = parse_scores(reply.text)
        if scores is None:
            self.unparsed += 1
            log.debug("judge reply not parsable: %r", reply.text[:200])
            return None
        self.judged += 1
        record["metadata"]["judge_scores"] = scores
        if (domain := parse_domain(reply.text)) is not None:
            record["metadata"]["judge_domain"] = domain
        return round(sum(scores.values()), 2)

    def summary(self) -> dict:
        return {**self.client.summary(), "judged": self.judged, "unparsed": self.unparsed}
