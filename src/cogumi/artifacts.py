"""The artifact store: every stage output is a folder whose `manifest.json` is written last.

A folder becomes an artifact by an atomic rename of a finished temporary folder, so a stage killed
mid-write leaves only a `.tmp-*` folder, which is never listed and is cleaned up later.
"""

import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cogumi.errors import ArtifactError, ConfigError
from cogumi.hashing import sha256_file, sha256_json, sha256_path
from cogumi.provenance import environment_record, peak_rss_mb

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    @property
    def ref(self) -> str:
        return f"{self.stage}/{self.name}"

    def file(self, relative: str) -> Path:
        return self.path / relative

    def manifest_sha256(self) -> str:
        return sha256_file(self.path / MANIFEST)


@dataclass
class ArtifactBuilder:
    """What a stage fills while its artifact is being written."""

    dir: Path
    stage: str
    name: str
    fingerprint: str
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    artifact: Artifact | None = None


def input_record(name: str, value: "Artifact | Path | str") -> dict:
    """How an input is named and hashed in a manifest: artifacts by their manifest, files by content."""
    if isinstance(value, Artifact):
        return {"name": name, "artifact": value.ref, "path": str(value.path), "sha256": value.manifest_sha256()}
    path = Path(value)
    if path.exists():
        return {"name": name, "path": str(path), "sha256": sha256_path(path)}
    # A hub id or other non-file input: its identity is its string.
    return {"name": name, "id": str(value), "sha256": sha256_json(str(value))}


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    # ---- reading -------------------------------------------------------------------------------
    def artifacts(self, stage: str | None = None) -> list[Artifact]:
        """Complete artifacts (folders with a manifest), oldest first."""
        stage_dirs = [self.root / stage] if stage else sorted(p for p in self.root.glob("*") if p.is_dir())
        found = []
        for stage_dir in stage_dirs:
            for folder in stage_dir.glob("*"):
                manifest = folder / MANIFEST
                if folder.name.startswith(_TMP_PREFIX) or not manifest.is_file():
                    continue
                found.append(Artifact(folder, json.loads(manifest.read_text())))
        return sorted(found, key=lambda a: (a.manifest.get("created_at", ""), a.name))

    def resolve(self, ref: "str | Path | Artifact") -> Artifact:
        """`latest:<stage>`, `promoted:<name>`, `<stage>/<name>` or a folder path."""
        if isinstance(ref, Artifact):
            return ref
        ref = str(ref)
        if ref.startswith("latest:"):
            stage = ref.split(":", 1)[1]
            artifacts = self.artifacts(stage)
            if not artifacts:
                raise ArtifactError(f"'{ref}': no complete artifact of stage '{stage}' under {self.root}")
            return artifacts[-1]
        if ref.startswith("promoted:"):
            pointer = self.root / "promoted" / f"{ref.split(':', 1)[1]}.json"
            if not pointer.is_file():
                raise ArtifactError(f"'{ref}': nothing promoted under that name ({pointer} missing)")
            return self.resolve(json.loads(pointer.read_text())["path"])
        folder = Path(ref) if Path(ref).is_absolute() or Path(ref).exists() else self.root / ref
        if not (folder / MANIFEST).is_file():
            raise ArtifactError(f"'{ref}': {folder} is not an artifact (no {MANIFEST})")
        return Artifact(folder, json.loads((folder / MANIFEST).read_text()))

    def of_domain(self, stage: str, domain: str, ref: str | None = None, wanted_by: str = "this stage") -> Artifact:
        """`ref`, or (None) the newest `stage` artifact made for `domain`; one made for another domain is
        refused. Domain stages (cascade, modifier) record their domain as manifest[stage]["domain"]."""
        if ref:
            artifact = self.resolve(ref)
        else:
            mine = [a for a in self.artifacts(stage) if a.manifest.get(stage, {}).get("domain") == domain]
            if not mine:
                raise ConfigError(f"no {stage} of domain '{domain}': run `python train.py stage={stage} domain={domain}`")
            artifact = mine[-1]
        made_for = artifact.manifest.get(stage, {}).get("domain")
        if made_for not in (None, domain):
            raise ConfigError(f"{ref}: {artifact.ref} is the '{made_for}' {stage}; {wanted_by} is for '{domain}'")
        return artifact

    def find(self, stage: str, fingerprint: str) -> Artifact | None:
        matches = [a for a in self.artifacts(stage) if a.manifest.get("fingerprint") == fingerprint]
        return matches[-1] if matches else None

    def promote(self, artifact: Artifact, name: str) -> Path:
        """Point `promoted:<name>` at an artifact (atomically: readers see the old or the new one)."""
        pointer = self.root / "promoted" / f"{name}.json"
        pointer.parent.mkdir(parents=True, exist_ok=True)
        record = {"path": str(artifact.path), "artifact": artifact.ref, "promoted_at": _now()}
        _write_json_atomic(pointer, record)
        return pointer

    # ---- writing -------------------------------------------------------------------------------
    @staticmethod
    def fingerprint(stage: str, config: dict, inputs: list[dict]) -> str:
        """Identity of a run: same stage, same deciding config, same input contents."""
        return sha256_json({"stage": stage, "config": config, "inputs": [i["sha256"] for i in inputs]})

    @contextmanager
    def create(self, stage: str, fingerprint: str, config: dict, inputs: list[dict], name: str | None = None,
               started: float | None = None):
        """Yield an ArtifactBuilder whose folder becomes an artifact only if the block completes.

        `started` (a `time.time()`) is when the stage began: `wall_s` then covers the whole stage, not
        only the writing of its files."""
        name = name or f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{fingerprint[:8]}"
        stage_dir = self.root / stage
        stage_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_tmp(stage_dir)
        tmp = stage_dir / f"{_TMP_PREFIX}{name}-{os.getpid()}"
        tmp.mkdir()
        builder = ArtifactBuilder(dir=tmp, stage=stage, name=name, fingerprint=fingerprint)
        started = time.time() if started is None else started
        try:
            yield builder
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        final = stage_dir / name
        if final.exists():
            raise ArtifactError(f"artifact folder {final} already exists")
        manifest = {
            "stage": stage,
            "name": name,
            "created_at": _now(),
            "fingerprint": fingerprint,
            "config": config,
            "inputs": inputs,
            "outputs": _output_records(tmp),
            "metrics": builder.metrics,
            **builder.extra,
            "timings": {"wall_s": round(time.time() - started, 3)},
            "peak_rss_mb": peak_rss_mb(),
            **environment_record(),
        }
        _write_json_atomic(tmp / MANIFEST, manifest)
        os.rename(tmp, final)
        builder.artifact = Artifact(final, manifest)
        log.info("artifact written: %s", final)

    @staticmethod
    def _remove_stale_tmp(stage_dir: Path) -> None:
        """Temporary folders of processes that no longer run are leftovers of a killed stage."""
        for tmp in stage_dir.glob(f"{_TMP_PREFIX}*"):
            pid = tmp.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _pid_alive(int(pid)):
                log.warning("removing %s left by an interrupted run", tmp)
                shutil.rmtree(tmp, ignore_errors=True)


def _output_records(folder: Path) -> list[dict]:
    return [
        {"path": f.relative_to(folder).as_posix(), "size": f.stat().st_size, "sha256": sha256_file(f)}
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    ]


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str))
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
