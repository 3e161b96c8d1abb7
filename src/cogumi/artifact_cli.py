"""`python -m cogumi artifacts list|show|diff`: look at and compare the artifact store."""

import json

from rich.console import Console
from rich.table import Table

from cogumi.artifacts import Artifact, ArtifactStore
from cogumi.evaluate.report import headline
from cogumi.paths import outputs_dir

_console = Console()


def _store() -> ArtifactStore:
    return ArtifactStore(outputs_dir() / "artifacts")


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): obj}


def list_artifacts(stage: str | None, store: ArtifactStore | None = None) -> list[Artifact]:
    artifacts = (store or _store()).artifacts(stage)
    table = Table(title=f"artifacts{' of ' + stage if stage else ''}")
    for column in ("stage", "name", "created", "headline figures", "wall s"):
        table.add_column(column, overflow="fold")  # wrap long figures, never cut them
    for a in artifacts:
        table.add_row(a.stage, a.name, a.manifest["created_at"][:19], "\n".join(headline(a)),
                      str(a.manifest.get("timings", {}).get("wall_s", "")))
    _console.print(table)
    return artifacts


def show_artifact(ref: str) -> None:
    artifact = _store().resolve(ref)
    summary = {k: v for k, v in artifact.manifest.items() if k != "config"}
    _console.print_json(json.dumps({"path": str(artifact.path), **summary}, default=str))


def diff_artifacts(ref: str, other: str) -> dict:
    """Config keys and metrics that differ between two artifacts."""
    a, b = _store().resolve(ref), _store().resolve(other)
    flat_a = _flatten({"config": a.manifest["config"], "metrics": a.metrics})
    flat_b = _flatten({"config": b.manifest["config"], "metrics": b.metrics})
    table = Table(title=f"{a.ref}  vs  {b.ref}")
    for column in ("key", a.name, b.name):
        table.add_column(column)
    differences = {}
    for key in sorted(set(flat_a) | set(flat_b)):
        if flat_a.get(key) != flat_b.get(key):
            differences[key] = (flat_a.get(key), flat_b.get(key))
            table.add_row(key, str(flat_a.get(key)), str(flat_b.get(key)))
    _console.print(table)
    return differences
