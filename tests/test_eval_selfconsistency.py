"""Self-consistency keeps only majority-agreeing, verified answers."""

import pytest

from cogumi.evaluate.offline_data import arc_rows, gsm8k_rows, mbpp_rows
from cogumi.evaluate.voting import problem_from, vote

MATH = problem_from("math", {"id": "1", "question": "What is 9 * 2?", "answer": "18"})


def test_math_majority_that_is_right_is_kept():
    samples = ["9 * 2 = 18. The answer is 18.", "The answer is 18.", "It is 18", "The answer is 17.", "x"]
    result = vote(MATH, samples, min_agreement=0.5)
    assert result.kept and result.answer == "18" and result.agreement == 0.6
    assert "18" in result.response


def test_math_majority_below_threshold_is_dropped():
    samples = ["The answer is 18.", "The answer is 18.", "The answer is 17.", "The answer is 16.", "The answer is 15."]
    assert not vote(MATH, samples, min_agreement=0.6).kept


def test_agreeing_but_wrong_majority_is_dropped():
    result = vote(MATH, ["The answer is 17."] * 5, min_agreement=0.6)
    assert not result.kept and result.reason == "majority answer is wrong"


def test_reasoning_needs_sixty_percent_and_the_key():
    doc = arc_rows("arc_easy")[0]
    problem = problem_from("reasoning", doc)
    right, wrong = problem.gold, "A" if problem.gold != "A" else "B"
    assert vote(problem, [f" {right}"] * 3 + [f" {wrong}"] * 2, 0.6).kept
    assert not vote(problem, [f" {right}"] * 2 + [f" {wrong}"] * 3, 0.6).kept
    kept = vote(problem, [f" {right}"] * 5, 0.6)
    assert kept.response.startswith(f"{right}. ") and doc["options"][doc["gold"]] in kept.response


def test_code_is_verified_by_execution():
    doc = mbpp_rows()[0]
    problem = problem_from("code", doc)
    good, bad = doc["code"], "def remove_Occ(s, ch):\n    return s\n"
    result = vote(problem, [bad, good, bad], min_agreement=0.2)
    assert result.kept and result.agreement == 1 / 3 and "remove_Occ" in result.response
    assert not vote(problem, [bad, bad], min_agreement=0.2).kept


def test_mining_items_come_from_the_mining_half_only():
    from cogumi.evaluate.offline_data import load

    mine_ids = set(load("gsm8k", "mine")["test"]["id"])
    gate_ids = set(load("gsm8k", "gate")["test"]["id"])
    assert mine_ids.isdisjoint(gate_ids) and len(mine_ids) + len(gate_ids) == len(gsm8k_rows())


@pytest.mark.slow
def test_hf_and_gguf_samplers_return_n_stopped_samples(embedded_model):
    from cogumi.evaluate.selfconsistency import Sampler
    from cogumi.hardware import HardwareSpec

    for kind, location in (("hf", str(embedded_model)), ("gguf", str(embedded_model / "source.gguf"))):
        sampler = Sampler(kind, location, HardwareSpec(name="cpu"))
        prompt = sampler.as_chat("Name a colour.")
        assert prompt.rstrip().endswith("assistant")  # the model's own chat template
        samples = sampler.sample(prompt, n=3, temperature=0.7, max_tokens=12, stop=["\n"], seed=1)
        assert len(samples) == 3 and all("\n" not in s for s in samples)
        assert len(sampler.sample("2 + 2 =", n=2, temperature=0.0, max_tokens=4, stop=[], seed=1)) == 2
