"""A teacher as judge (the seeds' GPT-4 judge): 1–10 ratings of the student's answer and the reference.

Both answers are rated on correctness, completeness, clarity and conciseness; the student wins,
ties or loses by its mean rating. Small local judges often break the format: those verdicts are
counted as `unparsed`, never guessed.
"""

import re
from dataclasses import dataclass

CRITERIA = ("correctness", "completeness", "clarity", "conciseness")

PROMPT = """You are grading two answers to the same question.
Question: {question}

Answer A: {student}

Answer B: {reference}

Rate each answer from 1 to 10 on correctness, completeness, clarity and conciseness.
Reply with exactly two lines and nothing else:
A: correctness, completeness, clarity, conciseness
B: correctness, completeness, clarity, conciseness"""


@dataclass(frozen=True)
class Verdict:
    student: dict | None  # criterion -> rating, None when unparsed
    reference: dict | None
    outcome: str  # win | tie | loss | unparsed
    raw: str


def parse_ratings(text: str) -> tuple[dict | None, dict | None]:
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\s*\**\s*(?:answer\s*)?([AB])\s*\**\s*[:\-]\s*(.*)", line, flags=re.I)
        if match:
            numbers = [int(n) for n in re.findall(r"\b(10|[1-9])\b", match.group(2))]
            if len(numbers) >= len(CRITERIA):
                rows.setdefault(match.group(1).upper(), dict(zip(CRITERIA, numbers[:len(CRITERIA)])))
    return rows.get("A"), rows.get("B")


def outcome(student: dict | None, reference: dict | None, margin: float = 0.5) -> str:
    if student is None or reference is None:
        return "unparsed"
    diff = sum(student.values()) / len(student) - sum(reference.values()) / len(reference)
    return "win" if diff > margin else "loss" if diff < -margin else "tie"


def judge(client, question: str, student: str, reference: str, max_tokens: int = 48) -> Verdict:
    reply = client.chat([{"role": "user", "content": PROMPT.format(question=question[:1500], student=student[:1500],
                                                                   reference=reference[:1500])}],
                        max_tokens=max_tokens, temperature=0.0, seed=0)
    a, b = parse_ratings(reply.text)
    return Verdict(a, b, outcome(a, b), reply.text)


def tally(verdicts: list[Verdict]) -> dict:
    counts = {k: sum(v.outcome == k for v in verdicts) for k in ("win", "tie", "loss", "unparsed")}
    rated = [v for v in verdicts if v.student is not None]
    for criterion in CRITERIA:
        if rated:
            counts[f"student_{criterion}"] = round(sum(v.student[criterion] for v in rated) / len(rated), 3)
    return counts
