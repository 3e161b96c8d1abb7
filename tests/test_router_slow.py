"""End to end on the embedded model: train the router and the detector, evaluate routing, sweep, CLI."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from cogumi.artifacts import ArtifactStore
from cogumi.evaluate import offline_data
from cogumi.paths import PROJECT_ROOT
from tests.conftest import run_entry

pytestmark = pytest.mark.slow

# One thread: the 135M model and MiniLM gain little from two, and a shared CPU makes two much slower.
# The default head: logistic regression over the embedding and the lexical features.
SMALL_ROUTER = ["hardware.threads=1", "stage.run.per_domain=80", "stage.run.calibration.fit_items=40",
                "stage.run.calibration.eval_items=40", "logger=none"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, embedded_model):
    """One small router + detector, in a private outputs folder shared by this module's tests."""
    outputs = tmp_path_factory.mktemp("router") / "outputs"
    env = {**os.environ, "COGUMI_OUTPUTS": str(outputs)}
    for stage, overrides in (("router", SMALL_ROUTER),
                             ("escalation", ["hardware.threads=1", "logger=none"])):  # full size: ~1 min
        result = run_entry("train", f"stage={stage}", *overrides, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    return outputs, env, ArtifactStore(outputs / "artifacts")


def test_router_splits_are_disjoint_and_never_hold_gating_items(trained):
    _, _, store = trained
    router = store.resolve("latest:router")
    rows = [json.loads(line) for line in (router.path / "splits.jsonl").read_text().splitlines()]
    by_text = {}
    for r in rows:
        by_text.setdefault(r["text"].strip().lower(), set()).add(r["split"])
    assert all(len(splits) == 1 for splits in by_text.values())
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    gated = {r["question"].strip().lower() for r in offline_data.load("mmlu", "gate")["test"]}
    gated |= {r["question"].strip().lower() for r in offline_data.load("gsm8k", "gate")["test"]}
    assert not gated & set(by_text)


def test_router_classifies_unseen_queries_above_a_floor(trained):
    _, _, store = trained
    metrics = store.resolve("latest:router").metrics
    assert metrics["domain_accuracy"] >= 0.8  # 80 queries per domain only; the pipeline's router is larger
    assert metrics["handwritten_accuracy"] >= 0.6 and metrics["handwritten_n"] >= 50
    assert metrics["handwritten_heldout_n"] >= 100 and metrics["handwritten_heldout_accuracy"] >= 0.6
    assert metrics["domain_accuracy_uncleaned"] >= 0.75  # the test split with its labels as the rules gave them
    assert 0.0 <= metrics["ece"] <= 1.0 and metrics["calibration_items"] == 40
    assert "logistic_val_accuracy" in metrics


def test_the_router_artifact_carries_its_lexical_features(trained):
    _, _, store = trained
    folder = store.resolve("latest:router").path
    spec = json.loads((folder / "router.json").read_text())
    assert spec["lexical"]["features"] > 100 and (folder / spec["lexical"]["file"]).is_file()
    from cogumi.router import load_router

    router = load_router(folder)
    assert router.head.inputs == 384 + spec["lexical"]["features"]
    assert router.classify("remind me to call the dentist tomorrow at 9").domain == "automation"


def test_cli_prints_the_decision_as_json(trained):
    _, env, store = trained
    router = store.resolve("latest:router").path
    result = subprocess.run([sys.executable, "-m", "cogumi", "route", "write a python function that sorts a list",
                             "--router", str(router), "--confidence", "0.1", "--modifier", "code",
                             "--escalation", "latest:escalation"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    decision = json.loads(result.stdout)
    assert decision["domain"] == "code" and decision["route"] == "modifier" and decision["adapter"] == "code"
    assert decision["dissatisfaction"]["dissatisfied"] is False


def test_escalation_detector_finds_complaints_it_was_not_trained_on(trained):
    _, _, store = trained
    metrics = store.resolve("latest:escalation").metrics
    assert metrics["eval_turns"] == 121  # held-out batch five; batches one to four join the fit, choose the threshold
    # measured recall 0.951 / precision 0.829 at these settings (the goal: 0.8 / 0.8)
    assert metrics["recall"] >= 0.85 and metrics["precision"] >= 0.75


def test_threshold_sweep_runs_three_trials_on_answers_scored_once(trained):
    outputs, env, store = trained
    result = run_entry("evaluate", "-m", "stage=route", "sweeps=router_threshold", "hydra.sweeper.n_trials=3",
                       "stage.run.items=30", "hardware.threads=1", "logger=none", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = store.artifacts("route_sweep")
    assert len(trials) == 3 and len(store.artifacts("route_answers")) == 1
    assert all(t.metrics["items"] == 30 and t.metrics["apgr"] is not None for t in trials)
    best = yaml.safe_load(next((outputs / "multiruns").rglob("optimization_results.yaml")).read_text())
    assert best["best_value"] == pytest.approx(max(t.metrics["utility"] for t in trials), abs=1e-6)
    assert 0.05 <= best["best_params"]["threshold"] <= 0.95
    assert (outputs / "router_threshold.db").is_file()
