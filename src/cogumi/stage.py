"""What every stage receives besides its own knobs: the store, the model, the hardware, the tracker."""

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.artifacts import Artifact, ArtifactStore, input_record
from cogumi.hardware import HardwareSpec
from cogumi.models.spec import ModelSpec
from cogumi.tracking import NullTracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInput:
    """A model a stage reads: the base model of the `model` group, or a model artifact."""

    source: str  # what from_pretrained gets: a folder or a hub id
    artifact: Artifact | None = None

    @property
    def identity(self) -> "Artifact | str":
        return self.artifact if self.artifact is not None else self.source


@dataclass
class StageContext:
    stage: str
    store: ArtifactStore
    model: ModelSpec
    hardware: HardwareSpec
    config: dict  # the resolved run config, recorded in the manifest
    fingerprint_config: dict  # the part of it that decides the result
    tracker: NullTracker = field(default_factory=NullTracker)
    force: bool = False
    started: float = field(default_factory=time.time)  # the manifest's wall_s counts from here
    _records: dict = field(default_factory=dict)

    def model_input(self, ref: str = "base") -> ModelInput:
        """`base` = the configured model; anything else is an artifact ref holding an HF folder."""
        if ref == "base":
            return ModelInput(self.model.source)
        artifact = self.store.resolve(ref)
        return ModelInput(str(artifact.file("model")), artifact)

    def _input_records(self, inputs: dict) -> list[dict]:
        key = tuple(sorted((k, str(v.path if isinstance(v, Artifact) else v)) for k, v in inputs.items()))
        if key not in self._records:
            self._records[key] = [input_record(name, value) for name, value in sorted(inputs.items())]
        return self._records[key]

    def up_to_date(self, inputs: dict) -> Artifact | None:
        """The artifact an identical earlier run produced, unless `force=true`."""
        fingerprint = ArtifactStore.fingerprint(self.stage, self.fingerprint_config, self._input_records(inputs))
        previous = None if self.force else self.store.find(self.stage, fingerprint)
        if previous is not None:
            log.info("%s is up to date (same inputs and config): %s — force=true reruns it",
                     self.stage, previous.path)
            _record_step(self.stage, previous, reused=True)
        return previous

    @contextmanager
    def create_artifact(self, inputs: dict, name: str | None = None):
        records = self._input_records(inputs)
        fingerprint = ArtifactStore.fingerprint(self.stage, self.fingerprint_config, records)
        with self.store.create(self.stage, fingerprint, self.config, records, name=name,
                               started=self.started) as builder:
            yield builder
        _record_step(self.stage, builder.artifact, reused=False)

    @property
    def outputs_root(self) -> Path:
        return self.store.root.parent


# The pipeline sets this to a file per step, to learn which artifact the step produced or reused.
STEP_RECORD_ENV = "COGUMI_STEP_RECORD"


def _record_step(stage: str, artifact: Artifact, reused: bool) -> None:
    path = os.environ.get(STEP_RECORD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"stage": stage, "path": str(artifact.path), "reused": reused}) + "\n")
