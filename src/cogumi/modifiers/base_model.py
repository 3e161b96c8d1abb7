"""Which student a modifier is built on, and a GGUF of those same weights for llama.cpp."""

import logging
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.errors import ArtifactError, ConfigError
from cogumi.stage import StageContext

log = logging.getLogger(__name__)

FALLBACK = "latest:sft"


def student_ref(ctx: StageContext, ref: str) -> str:
    """`ref`, or `latest:sft` with a warning when `ref` is a promotion that does not exist yet."""
    if ref.startswith("promoted:"):
        try:
            ctx.store.resolve(ref)
        except ArtifactError:
            log.warning("%s: nothing promoted yet; building on %s instead", ref, FALLBACK)
            return FALLBACK
    return ref


def gguf_of(ctx: StageContext, ref: str, gguf_type: str) -> Path:
    """A GGUF of the model `ref` names: the newest `gguf` artifact made from it, or the model group's own."""
    if ref == "base":
        if not ctx.model.gguf:
            raise ConfigError(f"model '{ctx.model.name}' names no gguf file")
        return Path(ctx.model.gguf)
    model = ctx.store.resolve(ref)
    for artifact in reversed(ctx.store.artifacts("gguf")):
        if _made_from(artifact, model):
            path = artifact.path / "gguf" / f"{gguf_type}.gguf"
            if path.is_file():
                return path
            have = sorted(p.stem for p in (artifact.path / "gguf").glob("*.gguf"))
            raise ConfigError(f"{artifact.ref} (GGUF of {model.ref}) has no {gguf_type}.gguf (has {have}): "
                              "set stage.run.gguf_type")
    raise ConfigError(f"no GGUF of {model.ref} yet: run `python compress.py stage=gguf stage.run.model={model.ref}`")


def _made_from(gguf_artifact: Artifact, model: Artifact) -> bool:
    return any(i.get("name") == "model" and Path(i.get("path", "")) == model.path
               for i in gguf_artifact.manifest.get("inputs", []))
