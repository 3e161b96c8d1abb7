"""A domain's items: one evaluation-set row as a prompt, the key its verifier checks, and the set's own answer.

Prompts are the lm-eval tasks' own texts (task_utils), so what a modifier is trained on is what its
gate asks. `reference` is the data set's gold answer written as a reply (the `reference` tier), or
None where a set has none. Items come from one `part` of a set (offline_data): `mine` for the
cascade, `gate` for the comparison, never both.
"""

import json
import re
from dataclasses import dataclass, field

from cogumi.errors import ConfigError
from cogumi.evaluate import offline_data
from cogumi.evaluate.failures import QUESTION_FIELD
from cogumi.evaluate.tasks import task_utils

LETTERS = task_utils.LETTERS
CHOICE_INSTRUCTION = "Answer with the letter of the correct option."


@dataclass(frozen=True)
class DomainItem:
    id: str  # unique across tasks: "<task>/<row id>" (or "feedback/<line>")
    task: str | None  # lm-eval task it came from; None for feedback lines
    prompt: str  # the user message the student and the teachers answer
    gold: object  # what the verifier checks against; None = the answer can only be checked for form
    reference: str | None = None  # the set's gold answer as a reply
    source: dict = field(default_factory=dict)  # provenance for the manifest
    question: str | None = None  # the text that states the problem (what a failure cluster is about)

    @property
    def topic(self) -> str:
        """What clustering embeds: the question without the task's instructions (or the whole prompt)."""
        return self.question or self.prompt


def _call_text(ground_truth: list[dict]) -> str:
    """BFCL's possible answer as one Python call: the first accepted value of every required argument."""
    calls = []
    for call in ground_truth:
        (name, params), = call.items()
        args = [f"{p}={accepted[0]!r}" for p, accepted in params.items() if accepted and accepted[0] != ""]
        calls.append(f"{name}({', '.join(args)})")
    return calls[0] if len(calls) == 1 else "[" + ", ".join(calls) + "]"


def _gsm8k_reply(solution: str, answer: str) -> str:
    """GSM8K's worked solution in the prompt's own style: calculator marks dropped, 'The answer is N.'"""
    body = re.sub(r"<<[^>]*>>", "", solution.split("####")[0]).strip()
    return f"{' '.join(body.split())} The answer is {answer}."


def _bfcl(doc):
    gold = json.loads(doc["answer"])
    return task_utils.bfcl_prompt(doc), gold, _call_text(gold)


def _gsm8k(doc):
    return task_utils.gsm8k_prompt(doc), doc["answer"], _gsm8k_reply(doc["solution"], doc["answer"])


def _mbpp(doc):
    return (task_utils.mbpp_prompt(doc), {"tests": doc["tests"], "setup": doc["setup"], "prefix": ""},
            f"```python\n{doc['code'].strip()}\n```")


def _humaneval(doc):
    return (f"Complete this Python function:\n```python\n{doc['prompt']}```",
            {"tests": doc["tests"], "setup": "", "prefix": doc["prompt"]},
            f"```python\n{doc['prompt']}{doc['solution']}```")


def _choice(question: str, options: list[str], gold: int):
    listed = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
    return (f"{question.strip()}\n{listed}\n{CHOICE_INSTRUCTION}", {"letter": LETTERS[gold], "n_options": len(options)},
            f"{LETTERS[gold]}. {options[gold]}")


def _arc(doc):
    return _choice(doc["question"], doc["options"], doc["gold"])


def _mmlu(doc):
    return _choice(doc["question"], doc["choices"], int(doc["answer"]))


def _truthfulqa(doc):
    return task_utils.truthfulqa_prompt(doc), {"answers": doc["answers"]}, doc["answers"][0]


# task -> (offline set, row -> (prompt, gold, reference), the verifier its key fits)
TASKS = {
    "cogumi_bfcl": ("bfcl", _bfcl, "tool_call"),
    "cogumi_gsm8k": ("gsm8k", _gsm8k, "final_number"),
    "cogumi_mbpp": ("mbpp", _mbpp, "unit_tests"),
    "cogumi_humaneval": ("humaneval", _humaneval, "unit_tests"),
    "cogumi_arc_challenge": ("arc_challenge", _arc, "option_letter"),
    "cogumi_arc_easy": ("arc_easy", _arc, "option_letter"),
    "cogumi_mmlu": ("mmlu", _mmlu, "option_letter"),
    "cogumi_truthfulqa": ("truthfulqa", _truthfulqa, "reference_f1"),
}


def verifier_of(task: str) -> str:
    """The verifier kind that fits a task's key."""
    if task not in TASKS:
        raise ConfigError(f"task '{task}' has no domain item builder; known: {sorted(TASKS)}")
    return TASKS[task][2]


def load_items(task: str, part: str, limit: int | None) -> list[DomainItem]:
    """The first `limit` rows of a task's `part` (mine | gate) as domain items."""
    if part not in ("mine", "gate"):
        raise ConfigError(f"items part '{part}': mine (cascade) or gate (comparison), never 'all'")
    name, build, _ = TASKS[task] if task in TASKS else (None, None, verifier_of(task))
    rows = offline_data.load(name, part)["test"].to_list()
    items = []
    for doc in rows[:limit]:
        prompt, gold, reference = build(doc)
        row_id = str(doc.get("id", len(items)))
        items.append(DomainItem(f"{task}/{row_id}", task, prompt, gold, reference,
                                offline_data.source_record(name, part) | {"item": row_id},
                                str(doc.get(QUESTION_FIELD.get(task, "question")) or "") or None))
    return items


def interleaved(tasks: list[str], part: str, limit: int) -> list[DomainItem]:
    """`limit` items across several tasks, taken round-robin so each task is represented."""
    per_task = [load_items(t, part, limit) for t in tasks]
    mixed = [item for layer in zip(*per_task) for item in layer]
    rest = [item for items in per_task for item in items[len(min(per_task, key=len)):]]
    return (mixed + rest)[:limit]
