"""Functions the Cogumi lm-eval task YAMLs name with `!function task_utils.<name>`.

lm-eval imports this file by path, so everything real lives in the `cogumi.evaluate` package and
is only wired here. `custom_dataset` loaders receive the TaskManager's metadata: `part` selects the
mining or the gating half of a set (see cogumi.evaluate.offline_data).
"""

import json
import re

from cogumi.evaluate import offline_data
from cogumi.evaluate.sandbox import check_solution, extract_code
from cogumi.evaluate.tool_calls import score_reply

LETTERS = "ABCDEFGHIJ"
SANDBOX = {"timeout_s": 10.0, "memory_mb": 512}

# Four of the classic chain-of-thought exemplars (Wei et al.); four keep prompts short on a CPU.
GSM8K_SHOTS = [
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are "
     "done, there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must "
     "have been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating "
     "35, they had 74 - 35 = 39. The answer is 39."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 "
     "dollars left. 23 - 15 is 8. The answer is 8."),
]


def _loader(name):
    def load(part: str = "all", **_metadata):
        return offline_data.load(name, part)

    return load


load_mmlu = _loader("mmlu")
load_arc_challenge = _loader("arc_challenge")
load_arc_easy = _loader("arc_easy")
load_hellaswag = _loader("hellaswag")
load_gsm8k = _loader("gsm8k")
load_mbpp = _loader("mbpp")
load_humaneval = _loader("humaneval")
load_bfcl = _loader("bfcl")
load_truthfulqa = _loader("truthfulqa")


# ---- prompts -------------------------------------------------------------------------------------
def mmlu_prompt(doc) -> str:
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(doc["choices"]))
    subject = doc["subject"].replace("_", " ")
    return f"The following is a multiple choice question about {subject}.\n\n{doc['question'].strip()}\n{options}\nAnswer:"


def mmlu_choices(doc) -> list[str]:
    return list(LETTERS[:len(doc["choices"])])


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag_prompt(doc) -> str:
    return _hellaswag_clean(f"{doc['activity']}: {doc['ctx']}")


def hellaswag_choices(doc) -> list[str]:
    return [_hellaswag_clean(e) for e in doc["endings"]]


def gsm8k_prompt(doc) -> str:
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in GSM8K_SHOTS)
    return f"{shots}Question: {doc['question']}\nAnswer:"


def mbpp_prompt(doc) -> str:
    return ("Please provide a self-contained Python script that solves the following problem in a markdown "
            f"code block:\n```\n{doc['text']}\n{doc['example_test']}\n```\n\nBelow is a Python script with a "
            "self-contained function that solves the problem and passes corresponding tests:\n```python\n")


def bfcl_prompt(doc) -> str:
    return ("You can call these functions (JSON schema):\n"
            f"{doc['functions']}\n\n"
            "Answer the request with exactly one function call in Python syntax, such as "
            "name(arg1=value1, arg2=value2), and nothing else.\n"
            f"Request: {doc['question']}\nCall:")


def truthfulqa_prompt(doc) -> str:
    return f"Q: {doc['question']}\nA:"


# ---- scoring -------------------------------------------------------------------------------------
def extract_number(text: str) -> str | None:
    """GSM8K answer: 'The answer is N' when the model says it, else the last number it wrote."""
    strict = re.search(r"answer is \$?(-?[\d,]*\.?\d+)", text)
    found = strict.group(1) if strict else (re.findall(r"-?\d[\d,]*\.?\d*", text) or [None])[-1]
    if found is None:
        return None
    found = found.replace(",", "").rstrip(".")
    return found[:-2] if found.endswith(".0") else found


def gsm8k_results(doc, results) -> dict:
    predicted = extract_number(results[0])
    return {"exact_match": float(predicted is not None and float(predicted) == float(doc["answer"]))}


def humaneval_results(doc, results) -> dict:
    outcome = check_solution(doc["prompt"] + results[0], doc["tests"], **SANDBOX)
    return {"pass_at_1": float(outcome.passed)}


def mbpp_results(doc, results) -> dict:
    outcome = check_solution(extract_code(results[0]), doc["tests"], doc["setup"], **SANDBOX)
    return {"pass_at_1": float(outcome.passed)}


def bfcl_results(doc, results) -> dict:
    return {"ast_match": float(score_reply(results[0], json.loads(doc["answer"])))}


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = _tokens(prediction), _tokens(reference)
    common = sum(min(pred.count(t), ref.count(t)) for t in set(pred))
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def truthfulqa_results(doc, results) -> dict:
    """Best token-F1 against the true reference answers (the shipped set has no false ones)."""
    best = max(token_f1(results[0], answer) for answer in doc["answers"])
    return {"truthful_f1": best, "truthful_match": float(best >= 0.5)}
