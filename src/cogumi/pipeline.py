"""The main job: run an experiment preset's `pipeline.steps` in order, each as its entry point would.

Every step is a separate process (memory is returned between stages, and the command is exactly
what a person would type). Resumability comes from the artifacts: a step whose inputs and config
are unchanged finds its artifact and returns at once.
"""

import json
import logging
import os
import shlex
import shutil
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


def _pipeline_config(experiment: str, overrides: list[str]):
    cfg = compose_entry("evaluate", [f"experiments={experiment}", *overrides])
    return cfg.get("pipeline") or {}


def pipeline_steps(experiment: str, overrides: list[str], pipeline_cfg=None) -> list[PipelineStep]:
    """Steps are `"<entry> <overrides>"` strings, or `{run: "<entry> <overrides>", gate: true}`."""
    if pipeline_cfg is None:
        pipeline_cfg = _pipeline_config(experiment, overrides)
    steps = pipeline_cfg.get("steps")
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


def tree_gib(folder: Path) -> float:
    if not folder.exists():
        return 0.0
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink()) / 2**30


def check_free_disk(outputs: Path, disk_gib: float | None, experiment: str) -> None:
    """Fail before the first step when the outputs' disk cannot hold what the run still has to write.

    A full disk otherwise shows up twenty minutes in, as an I/O error inside some library's save.
    What is already in outputs/ counts towards the preset's figure: a resumed run writes less.
    """
    if not disk_gib:
        return
    present = tree_gib(outputs)
    probe = outputs if outputs.exists() else next(p for p in outputs.parents if p.exists())
    free = shutil.disk_usage(probe).free / 2**30
    needed = max(disk_gib - present, 0.0)
    if free < needed:
        raise PipelineError(
            f"{outputs} is on a disk with {free:.1f} GiB free, but experiments/{experiment}.yaml's pipeline "
            f"writes up to {disk_gib:g} GiB (pipeline.disk_gib; {present:.1f} GiB of it already there): free "
            f"{needed - free:.1f} GiB or point COGUMI_OUTPUTS at a larger disk")
    log.info("disk: %.1f GiB free at %s, the pipeline needs up to %.1f GiB more", free, probe, needed)


def run_pipeline(experiment: str, overrides: list[str], dry_run: bool = False) -> list[StepOutcome]:
    pipeline_cfg = _pipeline_config(experiment, overrides)
    steps = pipeline_steps(experiment, overrides, pipeline_cfg)
    if not dry_run:
        check_free_disk(outputs_dir(), pipeline_cfg.get("disk_gib"), experiment)
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
        log.info("pipeline '%s' finished in %.0f s; gates failed: %s; outputs hold %.2f GiB; report: %s",
                 experiment, total, failed or "none", tree_gib(outputs_dir()), report)
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
