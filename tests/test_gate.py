"""Gates: thresholds are checked as written, and only a passing artifact is promoted."""

import json

import pytest

from cogumi.artifacts import ArtifactStore
from cogumi.errors import ConfigError
from cogumi.evaluate.gate_checks import check_all, validate

from conftest import run_entry

GATES = {
    "absolute": [{"metric": "acc", "min": 0.5}, {"metric": "size_mb", "max": 100}],
    "relative": [{"metric": "acc", "max_drop": 0.05}],
    "reference": "base",
}


def test_passing_metrics_pass_every_check():
    results = check_all(GATES, {"acc": 0.62, "size_mb": 80}, {"acc": 0.64})
    assert len(results) == 3 and all(r.passed for r in results)


@pytest.mark.parametrize(("metrics", "reference", "failing"), [
    ({"acc": 0.45, "size_mb": 80}, {"acc": 0.46}, ["acc >= 0.5"]),
    ({"acc": 0.62, "size_mb": 120}, {"acc": 0.62}, ["size_mb <= 100"]),
    ({"acc": 0.55, "size_mb": 80}, {"acc": 0.64}, ["acc drop <= 0.05"]),
    ({"size_mb": 80}, {"acc": 0.64}, ["acc >= 0.5", "acc drop <= 0.05"]),  # missing metric fails
    ({"acc": 0.62, "size_mb": 80}, {}, ["acc drop <= 0.05"]),  # missing on the reference fails
])
def test_missed_thresholds_fail(metrics, reference, failing):
    results = check_all(GATES, metrics, reference)
    assert sorted(f"{r.metric} {r.bound}" for r in results if not r.passed) == sorted(failing)


def test_bad_gate_configs_are_config_errors():
    with pytest.raises(ConfigError, match="allowed"):
        validate({"absolute": [{"metric": "acc", "minimum": 0.5}]})
    with pytest.raises(ConfigError, match="reference"):
        validate({"relative": [{"metric": "acc", "max_drop": 0.1}], "reference": None})


def _fake_model_artifact(store: ArtifactStore, name: str, megabytes: float):
    with store.create("sft", name, {}, [], name=name) as out:
        (out.dir / "model").mkdir()
        (out.dir / "model" / "model.safetensors").write_bytes(b"\0" * int(megabytes * 2**20))
    return out.artifact


def _gate(outputs, artifact, max_mb):
    return run_entry("evaluate", "stage=gate", f"stage.run.artifact={artifact.path}", "gates.tasks=[]",
                     f"gates.absolute=[{{metric:size_mb,max:{max_mb}}}]", "gates.relative=[]",
                     "gates.reference=null", "gates.promote_as=student", "logger=none", timeout=300)


def test_failing_gate_does_not_promote_and_the_previous_promotion_stays(outputs):
    store = ArtifactStore(outputs / "artifacts")
    good = _fake_model_artifact(store, "small", 1.0)
    bad = _fake_model_artifact(store, "big", 3.0)
    pointer = outputs / "artifacts" / "promoted" / "student.json"

    passed = _gate(outputs, good, 2)
    assert passed.returncode == 0, passed.stderr[-2000:]
    assert store.resolve("promoted:student").path == good.path

    failed = _gate(outputs, bad, 2)
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "not promoted" in failed.stderr + failed.stdout
    assert store.resolve("promoted:student").path == good.path
    assert json.loads(pointer.read_text())["artifact"] == good.ref
    gate_results = [json.loads((a.path / "results.json").read_text()) for a in store.artifacts("gate")]
    assert [r["passed"] for r in gate_results] == [True, False]
    assert "FAIL" in (store.artifacts("gate")[-1].path / "table.md").read_text()


def test_the_embedded_gate_reuses_the_pipelines_suite_runs():
    """Same knobs -> same fingerprint: the gate finds the suite artifacts the pipeline steps made."""
    from omegaconf import OmegaConf

    from cogumi.entry import compose_entry
    from cogumi.evaluate.suite import stage_config

    gates = compose_entry("evaluate", ["gates=embedded"]).gates
    limits = "{" + ",".join(f"{k}:{v}" for k, v in gates.limits.items()) + "}"
    cli = compose_entry("evaluate", ["stage=suite", "stage.run.model=latest:sft", f"stage.run.limit={gates.limit}",
                                     f"stage.run.limits={limits}", f"stage.run.max_gen_toks={gates.max_gen_toks}"])
    from_cli = OmegaConf.to_container(cli.stage, resolve=True)
    built = stage_config(model="latest:sft", kind="hf", tasks=list(gates.tasks), limit=gates.limit,
                         limits=dict(gates.limits), part=gates.part, max_gen_toks=gates.max_gen_toks)
    assert built == from_cli


def test_the_pipeline_suite_steps_use_the_embedded_gates_knobs():
    """If a step and gates=embedded drift apart, the gate silently evaluates everything again."""
    import shlex

    import yaml

    from cogumi.entry import compose_entry
    from cogumi.paths import PROJECT_ROOT

    gates = compose_entry("evaluate", ["gates=embedded"]).gates
    steps = yaml.safe_load((PROJECT_ROOT / "experiments" / "embedded.yaml").read_text())["pipeline"]["steps"]
    suites = [shlex.split(s)[1:] for s in steps if isinstance(s, str) and s.startswith("evaluate stage=suite")]
    assert suites
    for args in suites:
        run = compose_entry("evaluate", ["experiments=embedded", *args]).stage.run
        assert (run.limit, dict(run.limits), run.max_gen_toks, list(run.tasks), run.part) == (
            gates.limit, dict(gates.limits), gates.max_gen_toks, list(gates.tasks), gates.part)
