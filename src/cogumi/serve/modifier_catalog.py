"""Which LoRA modifiers a server offers: every `promoted:modifier-<domain>`, or an explicit list.

A modifier artifact (`train.py stage=modifier`, converted by the modifier stage) holds
`lora/adapter.gguf` and names its domain in the manifest's `modifier.domain` (the stage's `out.extra["modifier"]`).
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from cogumi.artifacts import Artifact, ArtifactStore
from cogumi.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)
ADAPTER_FILE = "lora/adapter.gguf"


@dataclass(frozen=True)
class ModifierFile:
    domain: str  # what `model=cogumi/<domain>` and the router's decisions call it
    path: Path  # the GGUF LoRA llama.cpp loads
    artifact: Artifact | None = None
    base_gguf: str | None = None  # the GGUF it was trained against, when the manifest says

    @property
    def served_name(self) -> str:
        return f"cogumi/{self.domain}"


def _from_artifact(artifact: Artifact) -> ModifierFile:
    info = artifact.manifest.get("modifier") or {}
    domain = info.get("domain")
    if not domain:
        raise ArtifactError(f"{artifact.path}/manifest.json: modifier.domain is missing")
    path = artifact.path / ADAPTER_FILE
    if not path.is_file():
        raise ArtifactError(f"modifier '{domain}' ({artifact.ref}): {path} is missing")
    return ModifierFile(domain, path, artifact, info.get("base_gguf"))


def promoted_modifiers(store: ArtifactStore) -> list[ModifierFile]:
    """Every `promoted/modifier-<domain>.json` pointer, resolved (a broken one is skipped with a warning)."""
    found = []
    for pointer in sorted((store.root / "promoted").glob("modifier-*.json")):
        try:
            found.append(_from_artifact(store.resolve(f"promoted:{pointer.stem}")))
        except ArtifactError as err:
            log.warning("skipping %s: %s", pointer, err)
    return found


def resolve_modifiers(spec, store: ArtifactStore) -> list[ModifierFile]:
    """`promoted` (default) = all promoted modifiers; null/`none` = none; a mapping `{domain: ref or
    .gguf path}` = exactly those (a missing one is an error: it was asked for by name)."""
    if spec in (None, "none", "null"):
        return []
    if spec == "promoted":
        return promoted_modifiers(store)
    if not hasattr(spec, "items"):
        raise ConfigError(f"stage.run.modifiers={spec!r}: expected 'promoted', null or {{domain: ref}}")
    found = []
    for domain, ref in spec.items():
        path = Path(str(ref))
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ConfigError(f"stage.run.modifiers.{domain}: no such file {path}")
            found.append(ModifierFile(str(domain), path))
        else:
            found.append(ModifierFile(str(domain), _from_artifact(store.resolve(str(ref))).path,
                                      store.resolve(str(ref))))
    return found
