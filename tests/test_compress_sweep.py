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


def test_two_trials_run_at_once_sharing_one_sqlite_study(outputs, embedded_model, tmp_path):
    """hydra/launcher=joblib with n_jobs=2: Optuna asks two trials, joblib runs them in two processes
    at the same time, and both are told to the one study in the sqlite file."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_entry("compress", "-m", "sweeps=quant_type", "quant_type=choice(Q4_0,Q8_0)", "hydra/launcher=joblib",
                       "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2",
                       f"hydra.sweeper.storage={storage}", "stage.run.max_windows=1", "logger=none")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = optuna.load_study(study_name="quant_type", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(len(t.values) == 2 for t in trials)  # multi-objective: KL and size
    # Each job's folder: .hydra/config.yaml is written when the job starts, trial.json when it ends.
    jobs = [p.parent for p in (outputs / "multiruns").rglob("trial.json")]
    assert len(jobs) == 2
    spans = sorted(((j / ".hydra" / "config.yaml").stat().st_mtime, (j / "trial.json").stat().st_mtime) for j in jobs)
    assert spans[1][0] < spans[0][1]  # the second started before the first ended: in parallel, not in turn
