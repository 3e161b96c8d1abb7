"""The code-execution harness: right code passes, wrong code fails, runaway code is stopped in time."""

from cogumi.evaluate.offline_data import humaneval_rows, mbpp_rows
from cogumi.evaluate.sandbox import check_solution, extract_code, run_program


def test_humaneval_canonical_solution_passes():
    item = humaneval_rows()[0]
    assert check_solution(item["prompt"] + item["solution"], item["tests"]).passed


def test_humaneval_wrong_solution_fails():
    item = humaneval_rows()[0]
    result = check_solution(item["prompt"] + "    return not True\n", item["tests"])
    assert not result.passed and result.status == "failed"


def test_infinite_loop_is_killed_within_its_timeout():
    item = humaneval_rows()[0]
    result = check_solution(item["prompt"] + "    while True:\n        pass\n", item["tests"], timeout_s=2.0)
    # "timeout" is the harness's own verdict: the loop was killed at its limit (a loop never ends by itself).
    assert not result.passed and result.status == "timeout"


def test_memory_bomb_fails_under_the_memory_limit():
    result = run_program("x = bytearray(2 * 1024**3)\n", memory_mb=256)
    assert not result.passed and "MemoryError" in result.detail


def test_child_cannot_see_the_parent_environment(monkeypatch):
    monkeypatch.setenv("COGUMI_SECRET_FOR_TEST", "x")
    assert run_program("import os\nassert 'COGUMI_SECRET_FOR_TEST' not in os.environ\n").passed


def test_mbpp_reference_code_passes_its_asserts():
    item = mbpp_rows()[0]
    assert check_solution(item["code"], item["tests"], item["setup"]).passed


def test_extract_code_takes_the_fenced_block():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone") == "def f():\n    return 1\n"
    assert extract_code("def g(): pass") == "def g(): pass"
