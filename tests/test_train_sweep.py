"""`train.py -m sweeps=lora_rank`: Optuna trials return the val loss; in-memory and sqlite storage."""

import pytest
import yaml

from cogumi.artifacts import ArtifactStore
from cogumi.train.fixtures import demo_dataset, write_tiny_llama
from tests.conftest import run_entry

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_lora_rank_sweep_runs_trials_and_reports_the_best(storage, outputs, tmp_path, embedded_model):
    store = ArtifactStore(outputs / "artifacts")
    demo_dataset(store, n_train=24, n_val=6)
    tiny = write_tiny_llama(tmp_path / "tiny", embedded_model)
    database = tmp_path / "study.db"
    # sqlite: two trials in a shared study; in-memory (the default): one trial, to keep CI short.
    trials_wanted = 2 if storage == "sqlite" else 1
    extra = [f"hydra.sweeper.storage=sqlite:///{database}"] if storage == "sqlite" else []
    result = run_entry("train", "-m", "sweeps=lora_rank", f"model.local_dir={tiny}", "logger=none",
                       f"hydra.sweeper.n_trials={trials_wanted}", "stage.run.max_steps=2", "stage.run.val_every=1",
                       "stage.run.seq_len=128", "hardware.batch_size=2", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "Best parameters" in log and "Best value" in log
    trials = store.artifacts("sft_sweep")
    assert len(trials) == trials_wanted and not store.artifacts("sft")  # trials never become `latest:sft`
    results = next((outputs / "multiruns").rglob("optimization_results.yaml"))
    best = yaml.safe_load(results.read_text())
    assert best["best_value"] == pytest.approx(min(t.metrics["val_loss"] for t in trials), abs=1e-4)
    assert best["best_params"]["rank"] in (8, 16, 32, 64)
    if storage == "sqlite":
        import optuna

        study = optuna.load_study(study_name="lora_rank", storage=f"sqlite:///{database}")
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
