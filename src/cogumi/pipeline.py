"""The main job: run an experiment preset's `pipeline.steps` in order, each as its entry point would.

Every step is a separate process (memory is returned between stages, and the command is exactly
what a person would type). Resumability comes from the artifacts: a step whose inputs and config
are unchanged finds its artifact and returns at once.
"""

import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cogumi.artifacts import ArtifactStore
from cogumi.entry import compose_entry
from cogumi.errors import CogumiError, ConfigError
from cogumi.evaluate.report import StepOutcome, closing_table, write_report
from cogumi.paths import PROJECT_ROOT, outputs_dir
from cogumi.stage import STEP_RECORD_ENV
from cogumi.tracking import RUN_GROUP_ENV

log = logging.getLogger(__name__)

ENTRIES = ("train", "compress", "evaluate", "serve")


class PipelineError(CogumiError):
    pass


@dataclass(frozen=True)
class PipelineStep:
    command: list[str]
    # A gate's exit code 1 is a verdict ("not promoted; the previous promotion stays live"), not a
    # broken pipeline: the steps after it still run and measure.
    gate: bool = False

    @property
    def shown(self) -> str:
        return " ".join(shlex.quote(c) for c in [Path(self.command[1]).name, *self.command[2:]])


def pipeline_steps(experiment: str, overrides: list[str]) -> list[PipelineStep]:
    """Steps are `"<entry> <overrides>"` strings, or `{run: "<entry> <overrides>", gate: true}`."""
    cfg = compose_entry("evaluate", [f"experiments={experiment}", *overrides])
    steps = (cfg.get("pipeline") or {}).get("steps")
    if not steps:
        raise ConfigError(f"experiments/{experiment}.yaml defines no pipeline.steps")
    parsed = []
    for step in steps:
        line, gate = (step, False) if isinstance(step, str) else (step.get("run", ""), bool(step.get("gate")))
        entry, *args = shlex.split(line) or [""]
        if entry not in ENTRIES:
            raise ConfigError(f"experiments/{experiment}.yaml: step '{line}' must start with one of {ENTRIES}")
        command = [sys.executable, str(PROJECT_ROOT / f"{entry}.py"), f"experiments={experiment}", *args, *overrides]
        parsed.append(PipelineStep(command, gate))
    return parsed


def run_pipeline(experiment: str, overrides: list[str], dry_run: bool = False) -> list[StepOutcome]:
    steps = pipeline_steps(experiment, overrides)
    run_id = f"{experiment}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    started = time.time()
    outcomes = []
    env = {**os.environ, RUN_GROUP_ENV: run_id}  # one W&B group per pipeline run
    for number, step in enumerate(steps, 1):
        log.info("[%d/%d] python %s", number, len(steps), step.shown)
        if dry_run:
            continue
        outcome = _run_step(number, step, env)
        outcomes.append(outcome)
        if step.gate and outcome.exit_code == 1:
            log.warning("gate failed: `%s` — nothing promoted, the previous promotion stays live", step.shown)
        elif outcome.exit_code != 0:
            raise PipelineError(f"step {number}/{len(steps)} `python {step.shown}` failed with exit code "
                                f"{outcome.exit_code}; rerun the pipeline to resume from that step")
    if not dry_run:
        total = time.time() - started
        command = " ".join(["python -m cogumi pipeline", f"--experiment {experiment}", *map(shlex.quote, overrides)])
        report = write_report(outputs_dir() / "reports" / run_id, experiment, run_id, command, outcomes, total)
        failed = [o.command for o in outcomes if o.verdict == "FAIL"]
        log.info("pipeline '%s' finished in %.0f s; gates failed: %s; report: %s", experiment, total,
                 failed or "none", report)
        log.info("closing table (also in %s):\n%s", report, closing_table(outcomes, total))
    return outcomes


def _run_step(number: int, step: PipelineStep, env: dict) -> StepOutcome:
    """Run one step; which artifact it made or reused comes from the record file the stage appends to."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", prefix="cogumi-step-") as record:
        started = time.time()
        code = subprocess.run(step.command, cwd=PROJECT_ROOT, env={**env, STEP_RECORD_ENV: record.name}).returncode
        wall = time.time() - started
        entries = [json.loads(line) for line in record.read().splitlines() if line.strip()]
    stage = _stage_of(step)
    own = [e for e in entries if e["stage"] == stage] or entries
    artifact, reused = None, False
    if own:
        try:
            artifact = ArtifactStore(Path(own[-1]["path"]).parent.parent).resolve(own[-1]["path"])
            reused = own[-1]["reused"]
        except CogumiError:
            artifact = None
    command = "python " + step.shown
    return StepOutcome(number, command, code, wall, step.gate, artifact, reused)


def _stage_of(step: PipelineStep) -> str:
    for arg in step.command:
        if arg.startswith("stage="):
            return arg.split("=", 1)[1]
    return ""
