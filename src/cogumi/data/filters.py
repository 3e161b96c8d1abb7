"""Per-record screens: schema, language, PII, offensive terms, and the offline quality heuristic.

Each screen returns None (keep) or a short reason; the stage counts removals per screen.
"""

import re
from dataclasses import dataclass, field

from cogumi.data.normalise import ROLES, record_text


def schema_problem(record: dict) -> str | None:
    """Parsed rows that still cannot train: empty texts, no user turn, not ending on the assistant."""
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no messages"
    for m in messages:
        if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return "bad message"
        if not m["content"].strip() and m["role"] in ("user", "assistant"):
            return "empty message"
    if not any(m["role"] == "user" for m in messages):
        return "no user message"
    if messages[-1]["role"] != "assistant":
        return "does not end with an assistant message"
    if not record["instruction"].strip() or not record["response"].strip():
        return "empty instruction or response"
    return None


class LanguageFilter:
    """Language ID with py3langid (langid.py's model, shipped inside the wheel: offline, ~30 µs/text).

    Texts the model is unsure about (probability below `min_confidence`, typically a few words or
    code) are kept and counted as `uncertain`: dropping them would remove short chit-chat and code.
    """

    def __init__(self, allowed: list[str], min_confidence: float = 0.5):
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.allowed = set(allowed)
        self.min_confidence = min_confidence
        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def detect(self, record: dict) -> tuple[str, float]:
        text = record_text(record)[:2000]  # the head decides; langid's cost grows with length
        lang, prob = self.identifier.classify(text)
        return lang, float(prob)

    def problem(self, lang: str, prob: float) -> str | None:
        if lang in self.allowed or prob < self.min_confidence:
            return None
        return f"language {lang} ({prob:.2f})"


_PII = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]*[a-z]{2,}\b", re.I),
    "phone": re.compile(r"(?<![\w.])(?:\+?\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w.])"),
    "us_ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "ipv4": re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    "card": re.compile(r"\b(?:\d[ -]?){13,16}\b"),
}


def _luhn(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def pii_problem(text: str, kinds: list[str], allow_domains: list[str]) -> str | None:
    """Personal data that should not be memorised. Example domains (example.com) are not PII."""
    for kind in kinds:
        for match in _PII[kind].finditer(text):
            value = match.group(0)
            if kind == "email" and value.split("@")[-1].lower() in allow_domains:
                continue
            if kind == "card" and not _luhn(re.sub(r"\D", "", value)):
                continue
            if kind == "phone" and re.search(r"(?:^|\D)555\D", value):  # 555 numbers are fictional
                continue
            return f"pii:{kind}"
    return None


def offensive_problem(text: str, pattern: re.Pattern | None) -> str | None:
    if pattern is None:
        return None
    match = pattern.search(text)
    return f"offensive:{match.group(0).lower()}" if match else None


def offensive_pattern(terms: list[str]) -> re.Pattern | None:
    """Whole-word, case-insensitive match of the configured terms (conf/data: `offensive_terms`)."""
    return re.compile(r"\b(?:" + "|".join(re.escape(t) for t in terms) + r")\b", re.I) if terms else None


@dataclass(frozen=True)
class QualityHeuristic:
    """Offline stand-in for the judge, on the same 0-10 scale as the seeds' rubric.

    accuracy 0-3 has no offline proxy beyond "not a refusal/boilerplate", so this scorer mostly
    measures completeness (length, structure), coherence (repetition, garbage characters) and
    helpfulness (answers rather than deflects). It ranks; the judge decides when enabled.
    """

    refusal_phrases: tuple[str, ...] = field(default=(
        "as an ai language model", "i'm sorry, but i cannot", "i cannot fulfill", "i am unable to",
        "as a language model", "i don't have the ability"))

    def score(self, record: dict) -> float:
        response, instruction = record["response"], record["instruction"]
        words = response.split()
        lowered = response.lower()
        # accuracy proxy (0-3): no refusal boilerplate, no leftover template placeholders
        accuracy = 3.0
        if any(p in lowered for p in self.refusal_phrases):
            accuracy -= 2.0
        if "{{" in response or "}}" in response:
            accuracy -= 1.0
        # completeness (0-2): substantial answer relative to the ask
        completeness = min(2.0, len(words) / 40) if len(words) < 80 else 2.0
        # coherence (0-2): repetition and junk characters
        unique_ratio = len(set(w.lower() for w in words)) / max(1, len(words))
        junk = sum(1 for ch in response if not (ch.isprintable() or ch in "\n\t")) / max(1, len(response))
        coherence = 2.0 * min(1.0, unique_ratio / 0.5 if len(words) > 20 else 1.0) - (2.0 if junk > 0.05 else 0)
        # helpfulness (0-3): ends cleanly, structured, does not just echo the question
        helpfulness = 1.0
        if response.rstrip()[-1:] in ".!?)`\"'*" or "\n" in response:
            helpfulness += 1.0
        if re.search(r"^\s*(?:\d+\.|[-*])\s", response, re.M) or "```" in response:
            helpfulness += 0.5
        if response.strip().lower() != instruction.strip().lower() and len(words) >= 3:
            helpfulness += 0.5
        return round(max(0.0, accuracy) + max(0.0, completeness) + max(0.0, coherence) + helpfulness, 2)
