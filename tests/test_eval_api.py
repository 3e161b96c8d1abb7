"""The served-API model kind: lm-eval generation tasks through a real OpenAI-compatible server on loopback."""

import pytest

from cogumi.evaluate.harness import ModelTarget, per_sample, run_suite, scores


@pytest.mark.slow
def test_generation_tasks_run_against_a_served_model(local_teacher):
    target = ModelTarget("api", local_teacher.base_url, api_model=local_teacher.model)
    results = run_suite(target, ["cogumi_truthfulqa", "cogumi_gsm8k"], {"cogumi_truthfulqa": 2, "cogumi_gsm8k": 1},
                        part="gate", gen_overrides={"max_gen_toks": 32})
    table = scores(results)
    assert set(table) == {"cogumi_truthfulqa", "cogumi_gsm8k"}
    assert 0.0 <= table["cogumi_truthfulqa"]["truthful_f1"] <= 1.0
    records = per_sample(results)
    assert len(records) == 3
    assert any(r["answer"].strip() for r in records), records  # the server really answered
