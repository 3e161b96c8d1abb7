"""The offline evaluation sets and the task-side scoring helpers."""

import pytest

from cogumi.errors import ConfigError
from cogumi.evaluate import offline_data
from cogumi.evaluate.harness import PRIMARY, TASKS_DIR, check_tasks
from cogumi.evaluate.tasks import task_utils


@pytest.mark.parametrize("name", sorted(offline_data.ROWS))
def test_mining_and_gating_halves_are_disjoint_and_cover_the_set(name):
    full = offline_data.load(name, "all")["test"]
    mine, gate = offline_data.load(name, "mine")["test"], offline_data.load(name, "gate")["test"]
    assert len(mine) + len(gate) == len(full) > 0
    assert not set(mine["id"]) & set(gate["id"])


def test_every_task_has_a_yaml_and_a_primary_metric():
    assert {p.stem for p in TASKS_DIR.glob("cogumi_*.yaml")} == set(PRIMARY)


def test_mmlu_prefix_samples_many_subjects():
    rows = offline_data.mmlu_rows()
    assert len(rows) == 14042
    assert len({r["subject"] for r in rows[:57]}) == 57


@pytest.mark.parametrize(("text", "number"), [
    ("5 + 4 = 9. The answer is 9.", "9"), ("so 1,200 in total. The answer is $1,250.", "1250"),
    ("it costs 18 dollars", "18"), ("no digits", None), ("The answer is 3.0", "3"),
])
def test_gsm8k_answer_extraction(text, number):
    assert task_utils.extract_number(text) == number


def test_gsm8k_scoring_compares_numbers():
    assert task_utils.gsm8k_results({"answer": "18"}, [" 9 * 2 = 18. The answer is 18."])["exact_match"] == 1.0
    assert task_utils.gsm8k_results({"answer": "18"}, [" The answer is 17."])["exact_match"] == 0.0


def test_truthfulqa_f1_prefers_the_reference_wording():
    doc = {"answers": ["Fortune cookies originated in San Francisco"]}
    assert task_utils.truthfulqa_results(doc, ["They originated in San Francisco."])["truthful_match"] == 1.0
    assert task_utils.truthfulqa_results(doc, ["In China."])["truthful_match"] == 0.0


def test_chat_api_cannot_run_loglikelihood_tasks():
    with pytest.raises(ConfigError, match="loglikelihood"):
        check_tasks(["cogumi_mmlu"], "api")
    with pytest.raises(ConfigError, match="unknown task"):
        check_tasks(["mmlu"], "hf")


def test_registering_the_gguf_model_keeps_lm_evals_own_models():
    import cogumi.evaluate.llama_lm  # noqa: F401
    from lm_eval.api.registry import get_model

    assert get_model("cogumi-gguf").__name__ == "LlamaCppLM"
    assert get_model("hf") is not None and get_model("local-chat-completions") is not None
