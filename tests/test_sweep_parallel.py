"""Two Optuna trials at once (slow): Hydra's joblib launcher runs them in two processes sharing one
sqlite study; each trial's own manifest says when it ran, and the two spans overlap."""

import json
from datetime import datetime, timedelta

import pytest

from tests.conftest import run_entry

pytestmark = pytest.mark.slow


def _span(manifest_path) -> tuple[datetime, datetime]:
    """(start, end) of a stage run from its manifest: created_at is written last, wall_s counts from the start."""
    manifest = json.loads(manifest_path.read_text())
    end = datetime.fromisoformat(manifest["created_at"])
    return end - timedelta(seconds=manifest["timings"]["wall_s"]), end


def test_two_trials_run_at_once_sharing_one_sqlite_study(outputs, embedded_model, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_entry("compress", "-m", "sweeps=quant_type", "quant_type=choice(Q4_0,Q8_0)", "hydra/launcher=joblib",
                       "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2",
                       f"hydra.sweeper.storage={storage}", "stage.run.max_windows=1", "logger=none", timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]

    trials = optuna.load_study(study_name="quant_type", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(len(t.values) == 2 for t in trials)  # multi-objective: KL and size, one value each
    assert sorted(t.params["quant_type"] for t in trials) == ["Q4_0", "Q8_0"]

    # Each job ran in its own process and wrote its own artifact (not one reused by the other).
    records = [json.loads(p.read_text()) for p in (outputs / "multiruns").rglob("trial.json")]
    assert len(records) == 2
    manifests = [outputs / "artifacts" / r["artifact"] / "manifest.json" for r in records]
    assert len({m.parent for m in manifests}) == 2
    (start_a, end_a), (start_b, end_b) = sorted(_span(m) for m in manifests)
    assert start_b < end_a, f"trial B started {start_b} after trial A ended {end_a}: they ran in turn"
    # The study's values are the trials' own metrics (told back through the one sqlite file).
    told = sorted(tuple(t.values) for t in trials)
    assert told == sorted((r["metrics"]["kl_mean"], r["metrics"]["size_mb"]) for r in records)
