"""The run report: an 80-column closing table, report.md with figures and commands, true wall times."""

import json
import os
import sys
import time

from cogumi.artifacts import ArtifactStore
from cogumi.evaluate.report import WIDTH, StepOutcome, closing_table, write_report
from cogumi.hardware import HardwareSpec
from cogumi.models.spec import ModelSpec
from cogumi.paths import PROJECT_ROOT
from cogumi.pipeline import PipelineStep, _run_step
from cogumi.stage import STEP_RECORD_ENV, StageContext
from cogumi.tracking import RUN_GROUP_ENV


def _suite_artifact(store: ArtifactStore, name: str, correct: list[int]):
    scores = {"cogumi_arc_easy": {f"q{i}": float(c) for i, c in enumerate(correct)}}
    with store.create("suite", name, {"stage": {"run": {"model": name, "kind": "gguf"}}}, [], name=name) as out:
        (out.dir / "item_scores.json").write_text(json.dumps(scores))
        (out.dir / "plot.png").write_bytes(b"\x89PNG fake")
        value = sum(correct) / len(correct)
        out.metrics.update({"cogumi_arc_easy/acc_norm": value})
        out.extra["estimates"] = {"cogumi_arc_easy/acc_norm": {"value": value, "low": 0.1, "high": 0.9,
                                                               "n": len(correct), "method": "wilson"}}
        out.extra["headline"] = [f"cogumi_arc_easy/acc_norm {value:.3f} [0.100, 0.900] n={len(correct)}"]
    return out.artifact


def _long_artifact(store: ArtifactStore):
    with store.create("sft", "long", {}, [], name="long") as out:
        out.metrics.update({"a_really_long_metric_name_that_would_not_fit_in_any_terminal_column/x": 1.23456789,
                            "val_loss": 1.7031, "steps": 30})
    return out.artifact


def test_closing_table_fits_80_columns_and_states_verdicts(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    base, sft = _suite_artifact(store, "base", [1, 0] * 100), _suite_artifact(store, "sft", [1, 1] * 100)
    outcomes = [StepOutcome(1, "python train.py stage=sft", 0, 318.4, artifact=_long_artifact(store)),
                StepOutcome(2, "python evaluate.py stage=suite", 0, 61.0, artifact=base, reused=True),
                StepOutcome(3, "python evaluate.py stage=suite stage.run.model=latest:sft", 0, 55.0, artifact=sft),
                StepOutcome(4, "python evaluate.py stage=gate", 1, 3.2, gate=True)]
    table = closing_table(outcomes, 437.6)
    assert all(len(line) <= WIDTH for line in table.splitlines()), table
    rows = {line[:2].strip(): line for line in table.splitlines() if line[:2].strip().isdigit()}
    assert "318.4" in rows["1"] and "val_loss=1.703" in table  # the true wall time, figures not cut at 14 chars
    assert "cached" in rows["2"] and "     arc_easy/acc_norm 0.500 [0.100, 0.900] n=200" in table
    assert "FAIL" in rows["4"] and table.splitlines()[-1] == "total 438 s (7.3 min)"


def test_report_holds_figures_commands_pngs_and_the_paired_comparison(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    base = _suite_artifact(store, "base", [1, 0] * 100)
    better = _suite_artifact(store, "sft", [1] * 200)
    outcomes = [StepOutcome(1, "python evaluate.py stage=suite", 0, 10.0, artifact=base),
                StepOutcome(2, "python evaluate.py stage=suite stage.run.model=latest:sft", 0, 12.0, artifact=better)]
    path = write_report(tmp_path / "reports" / "run-1", "embedded", "run-1", "python -m cogumi pipeline", outcomes, 22)
    text = path.read_text()
    assert "Reproduce: `python evaluate.py stage=suite stage.run.model=latest:sft`" in text
    assert "| cogumi_arc_easy/acc_norm | 1.000 | 0.500 | +0.500" in text and "significant gain" in text
    assert (path.parent / "01-suite-plot.png").is_file() and "](01-suite-plot.png)" in text


def test_manifest_wall_time_covers_the_whole_stage(tmp_path, monkeypatch):
    record = tmp_path / "steps.jsonl"
    monkeypatch.setenv(STEP_RECORD_ENV, str(record))
    ctx = StageContext(stage="demo", store=ArtifactStore(tmp_path / "artifacts"), model=ModelSpec("m", "m"),
                       hardware=HardwareSpec("cpu"), config={}, fingerprint_config={})
    time.sleep(1.2)  # the stage's work before it writes its files
    with ctx.create_artifact({}) as out:
        out.metrics["x"] = 1
    assert out.artifact.manifest["timings"]["wall_s"] >= 1.2
    assert ctx.up_to_date({}) is not None
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(e["stage"], e["reused"]) for e in entries] == [("demo", False), ("demo", True)]


def test_a_pipeline_step_knows_the_artifact_it_made_and_its_gate_verdict(outputs):

    store = ArtifactStore(outputs / "artifacts")
    with store.create("sft", "m", {}, [], name="small") as out:
        (out.dir / "model").mkdir()
        (out.dir / "model" / "model.safetensors").write_bytes(b"\0" * 2**20)
    command = [sys.executable, str(PROJECT_ROOT / "evaluate.py"), "stage=gate", f"stage.run.artifact={out.artifact.path}",
               "gates.tasks=[]", "gates.absolute=[{metric:size_mb,max:0.5}]", "gates.relative=[]",
               "gates.reference=null", "gates.promote_as=student", "logger=none"]
    outcome = _run_step(1, PipelineStep(command, gate=True), {**os.environ, RUN_GROUP_ENV: "run-1"})
    assert outcome.exit_code == 1 and outcome.verdict == "FAIL"
    assert outcome.artifact is not None and outcome.artifact.stage == "gate" and not outcome.reused
    assert outcome.wall_s >= outcome.artifact.manifest["timings"]["wall_s"] > 0
    assert any("FAIL" in line for line in closing_table([outcome], outcome.wall_s).splitlines())
    again = _run_step(1, PipelineStep(command, gate=True), dict(os.environ))
    assert again.reused and again.artifact.path == outcome.artifact.path and again.verdict == "FAIL"
