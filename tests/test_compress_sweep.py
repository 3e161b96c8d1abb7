"""The quant_type sweep end to end (slow): Optuna trials, then a Pareto table and PNG with the knee."""

import pytest

from tests.conftest import run_entry

pytestmark = pytest.mark.slow


def test_quant_type_sweep_writes_a_pareto_report(outputs, embedded_model):
    result = run_entry("compress", "-m", "sweeps=quant_type", "quant_type=choice(Q4_0,Q8_0)",
                       "stage.run.max_windows=1", "logger=none")
    assert result.returncode == 0, result.stderr[-3000:]
    reports = list((outputs / "multiruns").rglob("pareto.md"))
    assert len(reports) == 1
    table = reports[0].read_text()
    assert "| Q4_0 |" in table and "| Q8_0 |" in table and "**knee**" in table
    assert (reports[0].parent / "pareto.png").stat().st_size > 1000
    # Trials are their own stage: they never become `latest:gguf`.
    assert not (outputs / "artifacts" / "gguf").exists()

