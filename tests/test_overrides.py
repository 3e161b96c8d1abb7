"""A bad override fails fast: exit code 2, one line naming the valid choices, no traceback."""

import pytest

from conftest import run_entry


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_stage_lists_the_stages():
    line = _one_line_error(run_entry("evaluate", "stage=no_such_stage"))
    assert "no_such_stage" in line and "perplexity" in line


def test_unknown_hardware_lists_the_profiles():
    line = _one_line_error(run_entry("evaluate", "hardware=tpu-v9"))
    assert "tpu-v9" in line and "h100" in line and "cpu" in line


def test_unknown_key_is_named():
    line = _one_line_error(run_entry("evaluate", "stage.run.windw=128"))
    assert "windw" in line


def test_stage_from_the_wrong_entry_point():
    line = _one_line_error(run_entry("train", "stage=perplexity"))
    assert "evaluate.py" in line


# serve.py is not here: its default stage is `serve` (issue 7), so without overrides it starts serving.
@pytest.mark.parametrize("entry", ["train", "compress"])
def test_entry_without_a_stage_says_so(entry):
    line = _one_line_error(run_entry(entry))
    assert "stage" in line
