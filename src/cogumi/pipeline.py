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

from cogumi.artifacts import ArtifactStore
from cogumi.entry import compose_entry
from cogumi.errors import CogumiError, ConfigError
from cogumi.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

ENTRIES = ("train", "compress", "evaluate", "serve")


class PipelineError(CogumiError):
    pass


def pipeline_commands(experiment: str, overrides: list[str]) -> list[list[str]]:
    cfg = compose_entry("evaluate", [f"experiments={experiment}", *overrides])
    steps = (cfg.get("pipeline") or {}).get("steps")
    if not steps:
        raise ConfigError(f"experiments/{experiment}.yaml defines no pipeline.steps")
    commands = []
    for step in steps:
        entry, *args = shlex.split(step)
        if entry not in ENTRIES:
            raise ConfigError(f"experiments/{experiment}.yaml: step '{step}' must start with one of {ENTRIES}")
        commands.append([sys.executable, str(PROJECT_ROOT / f"{entry}.py"), f"experiments={experiment}",
                         *args, *overrides])
    return commands


def run_pipeline(experiment: str, overrides: list[str], dry_run: bool = False) -> None:
    commands = pipeline_commands(experiment, overrides)
    started = time.time()
    for number, command in enumerate(commands, 1):
        shown = " ".join(shlex.quote(c) for c in [PROJECT_ROOT.joinpath(command[1]).name, *command[2:]])
        log.info("[%d/%d] python %s", number, len(commands), shown)
        if dry_run:
            continue
        code = subprocess.run(command, cwd=PROJECT_ROOT).returncode
        if code != 0:
            raise PipelineError(f"step {number}/{len(commands)} `python {shown}` failed with exit code {code}; "
                                "rerun the pipeline to resume from that step")
    if not dry_run:
        log.info("pipeline '%s' finished in %.0f s", experiment, time.time() - started)
        cfg = compose_entry("evaluate", [f"experiments={experiment}", *overrides])
        from cogumi.artifact_cli import list_artifacts

        list_artifacts(None, ArtifactStore(cfg.paths.artifacts))
