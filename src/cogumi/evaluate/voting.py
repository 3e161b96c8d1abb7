"""Self-consistency for one item: sample N answers, vote, verify — the teacher tier that needs no model.

Per category (the seeds' category-specific generation): math votes on the extracted final number,
reasoning on the chosen option letter, both kept only when the majority reaches `min_agreement`
and equals the ground truth; code is kept when a sample passes its tests in the sandbox.
"""

import re
from collections import Counter
from dataclasses import dataclass

from cogumi.evaluate.sandbox import check_solution, extract_code
from cogumi.evaluate.tasks import task_utils

LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Problem:
    category: str  # math | reasoning | code
    id: str
    prompt: str  # what the student is sampled on (few-shot or code-prefix prompt)
    instruction: str  # the plain question a distilled training record carries
    gold: str  # number, option letter, or the tests to run
    setup: str = ""
    choices: tuple[str, ...] = ()  # reasoning: the option texts
    chat: bool = False  # sample through the model's chat template (instruct models answer MC far more readably)


@dataclass(frozen=True)
class Vote:
    kept: bool
    answer: str | None  # the voted / passing answer
    agreement: float  # share of samples agreeing with it (code: share passing)
    response: str | None  # the sample that becomes the training response
    reason: str


def problem_from(category: str, doc: dict) -> Problem:
    if category == "math":
        return Problem("math", doc["id"], task_utils.gsm8k_prompt(doc), doc["question"], doc["answer"])
    if category == "code":
        return Problem("code", doc["id"], task_utils.mbpp_prompt(doc),
                       f"{doc['text']}\nYour code should pass this test:\n{doc['example_test']}", doc["tests"],
                       doc["setup"])
    options = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(doc["options"]))
    question = f"{doc['question']}\n{options}"
    return Problem("reasoning", doc["id"], f"{question}\nAnswer with the letter of the correct option.", question,
                   LETTERS[doc["gold"]], choices=tuple(doc["options"]), chat=True)


def option_letter(text: str, n_options: int = 10) -> str | None:
    match = re.search(rf"\b([{LETTERS[:n_options]}])\b", text.strip()[:40])
    return match.group(1) if match else None


def vote(problem: Problem, samples: list[str], min_agreement: float, timeout_s: float = 10.0) -> Vote:
    if not samples:
        return Vote(False, None, 0.0, None, "no samples")
    if problem.category == "code":
        passing = [s for s in samples if check_solution(extract_code(s), problem.gold, problem.setup,
                                                         timeout_s=timeout_s).passed]
        agreement = len(passing) / len(samples)
        if not passing:
            return Vote(False, None, 0.0, None, "no sample passes the tests")
        code = extract_code(passing[0]).strip()
        return Vote(agreement >= min_agreement, code, agreement, f"```python\n{code}\n```",
                    "passes its tests" if agreement >= min_agreement else "too few samples pass")
    extract = task_utils.extract_number if problem.category == "math" else option_letter
    answers = [extract(s) for s in samples]
    counted = Counter(a for a in answers if a is not None)
    if not counted:
        return Vote(False, None, 0.0, None, "no answer could be read")
    answer, votes = counted.most_common(1)[0]
    agreement = votes / len(samples)
    if agreement < min_agreement:
        return Vote(False, answer, agreement, None, f"majority {agreement:.0%} < {min_agreement:.0%}")
    if not _same_answer(answer, problem.gold):
        return Vote(False, answer, agreement, None, "majority answer is wrong")
    response = next(s for s, a in zip(samples, answers) if a == answer).strip()
    if problem.category == "reasoning":  # a bare letter teaches little: answer with the option's text
        response = f"{answer}. {problem.choices[LETTERS.index(answer)]}"
    return Vote(True, answer, agreement, response, "majority agrees and is right")


def _same_answer(answer: str, gold: str) -> bool:
    try:
        return float(answer) == float(gold)
    except ValueError:
        return answer.strip().upper() == gold.strip().upper()
