"""Experiment trackers: W&B (offline by default, no account needed) or none."""

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Set by the pipeline for its steps: every step of one pipeline run lands in one W&B group, so two
# runs compare side by side; a stage run by hand is grouped by its entry point.
RUN_GROUP_ENV = "COGUMI_RUN_GROUP"


def run_group(default: str) -> str:
    return os.environ.get(RUN_GROUP_ENV) or default


class NullTracker:
    """`logger=none`: metrics still land in the artifact manifest, nowhere else."""

    def start(self, name: str, group: str, config: dict) -> None:
        pass

    def log(self, metrics: dict, step: int | None = None) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker(NullTracker):
    def __init__(self, project: str, mode: str = "offline", dir: str = "outputs", entity: str | None = None,
                 tags: list[str] | None = None):
        self.project, self.mode, self.dir, self.entity, self.tags = project, mode, dir, entity, tags or []
        self.run = None

    def start(self, name: str, group: str, config: dict) -> None:
        import wandb

        Path(self.dir).mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=self.project, entity=self.entity, mode=self.mode, dir=self.dir,
                              name=name, group=run_group(group), job_type=group, tags=self.tags, config=config,
                              reinit="finish_previous")
        log.info("wandb run %s (%s) in %s", self.run.id, self.mode, self.run.dir)

    def log(self, metrics: dict, step: int | None = None) -> None:
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        if self.run is not None and numeric:
            self.run.log(numeric, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
