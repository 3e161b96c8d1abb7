"""The main job: run an experiment preset's `pipeline.steps` in order, each as its entry point would.

Every step is a separate process (memory is returned between stages, and the command is exactly
what a person would type). Resumability comes from the artifacts: a step whose inputs and config
are unchanged finds its artifact and returns at once.
"""

import logging
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cogumi.artifacts import ArtifactStore
from cogumi.entry import compose_entry
from cogumi.errors import CogumiError, ConfigError
from cogumi.paths import PROJECT_ROOT

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


def run_pipeline(experiment: str, overrides: list[str], dry_run: bool = False) -> None:
    steps = pipeline_steps(experiment, overrides)
    started = time.time()
    failed_gates = []
    for number, step in enumerate(steps, 1):
        log.info("[%d/%d] python %s", number, len(steps), step.shown)
        if dry_run:
            continue
        code = subprocess.run(step.command, cwd=PROJECT_ROOT).returncode
        if step.gate and code == 1:
            log.warning("gate failed: `%s` — nothing promoted, the previous promotion stays live", step.shown)
            failed_gates.append(step.shown)
        elif code != 0:
            raise PipelineError(f"step {number}/{len(steps)} `python {step.shown}` failed with exit code {code}; "
                                "rerun the pipeline to resume from that step")
    if not dry_run:
        log.info("pipeline '%s' finished in %.0f s; gates failed: %s", experiment, time.time() - started,
                 failed_gates or "none")
        cfg = compose_entry("evaluate", [f"experiments={experiment}", *overrides])
        from cogumi.artifact_cli import list_artifacts

        list_artifacts(None, ArtifactStore(cfg.paths.artifacts))
