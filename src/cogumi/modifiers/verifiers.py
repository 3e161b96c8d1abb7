"""A domain's verifier: does an answer to an item pass? Every answer the cascade keeps went through here.

With a key (the set's gold): tool calls by BFCL's AST match, math by the final number, code by
running its tests in the sandbox, multiple choice by the letter, open answers by token F1 against
the reference answers or by a judge's rubric ratings. Without a key (a served-feedback line) only
the form can be checked: a parseable call, a number, code that compiles, a letter, a non-empty reply.
"""

import ast
from dataclasses import dataclass

from cogumi.errors import ConfigError
from cogumi.evaluate.sandbox import check_solution, extract_code
from cogumi.evaluate.tasks.task_utils import extract_number, token_f1
from cogumi.evaluate.tool_calls import parse_calls, score_reply
from cogumi.evaluate.voting import option_letter
from cogumi.modifiers.items import DomainItem

KINDS = ("tool_call", "final_number", "unit_tests", "option_letter", "reference_f1", "judge")
# Where a chat reply of each kind ends (besides the end-of-turn token): one call, one worked answer, ...
REPLY_STOPS = {"tool_call": ["\n"], "final_number": ["Question:", "\n\n"], "unit_tests": ["\n```\n"],
               "option_letter": ["\n"], "reference_f1": ["\n"], "judge": []}


@dataclass(frozen=True)
class Check:
    passed: bool
    how: str  # key | form | judge: what the pass rests on


def _same_number(found: str | None, gold: str) -> bool:
    try:
        return found is not None and float(found) == float(gold)
    except ValueError:
        return False


def _compiles(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return bool(code.strip())


class Verifier:
    """`check(item, answer) -> Check`; `judge` needs a TeacherClient and a minimum mean rating."""

    def __init__(self, kind: str, min_score: float | None = None, min_f1: float = 0.5, judge_client=None,
                 timeout_s: float = 10.0):
        if kind not in KINDS:
            raise ConfigError(f"verifier kind '{kind}': expected one of {KINDS}")
        if kind == "judge" and (judge_client is None or min_score is None):
            raise ConfigError("verifier kind 'judge' needs a teacher endpoint and min_score (1-10)")
        self.kind, self.min_score, self.min_f1 = kind, min_score, min_f1
        self.judge_client, self.timeout_s = judge_client, timeout_s

    def check(self, item: DomainItem, answer: str) -> Check:
        if not answer or not answer.strip():
            return Check(False, "form")
        if self.kind == "judge":
            return Check(self._judged(item, answer), "judge")
        if item.gold is None:
            return Check(self._well_formed(answer), "form")
        return Check(self._matches_key(item.gold, answer), "key")

    def _matches_key(self, gold, answer: str) -> bool:
        if self.kind == "tool_call":
            return score_reply(answer, gold)
        if self.kind == "final_number":
            return _same_number(extract_number(answer), str(gold))
        if self.kind == "unit_tests":
            program = gold["prefix"] + extract_code(answer) if gold["prefix"] else extract_code(answer)
            return check_solution(program, gold["tests"], gold["setup"], timeout_s=self.timeout_s).passed
        if self.kind == "option_letter":
            return option_letter(answer, gold["n_options"]) == gold["letter"]
        return max(token_f1(answer, ref) for ref in gold["answers"]) >= self.min_f1  # reference_f1

    def _well_formed(self, answer: str) -> bool:
        if self.kind == "tool_call":
            return bool(parse_calls(answer))
        if self.kind == "final_number":
            return extract_number(answer) is not None
        if self.kind == "unit_tests":
            return _compiles(extract_code(answer))
        if self.kind == "option_letter":
            return option_letter(answer) is not None
        return True  # reference_f1 without references: any non-empty reply

    def _judged(self, item: DomainItem, answer: str) -> bool:
        from cogumi.evaluate.judge import judge

        verdict = judge(self.judge_client, item.prompt, answer, item.reference or "(no reference answer)")
        if verdict.student is None:
            return False  # an unreadable verdict never lets an answer in
        return sum(verdict.student.values()) / len(verdict.student) >= self.min_score


def verifier_from(settings: dict, judge_client=None) -> Verifier:
    """A verifier from a domain file's `verifier:` mapping."""
    settings = dict(settings)
    kind = settings.pop("kind", None)
    unknown = set(settings) - {"min_score", "min_f1", "timeout_s"}
    if unknown:
        raise ConfigError(f"verifier: unknown key(s) {sorted(unknown)}")
    return Verifier(kind, judge_client=judge_client, **settings)
