"""Which GGUF file a serve/export command means: `base`, an artifact ref, or a path."""

import logging
from dataclasses import dataclass
from pathlib import Path

from cogumi.artifacts import Artifact, ArtifactStore
from cogumi.errors import ArtifactError, ConfigError
from cogumi.models.spec import ModelSpec

log = logging.getLogger(__name__)

# What a GGUF artifact holds, best first (compress stage=gguf writes gguf/<TYPE>.gguf).
PREFERRED_TYPES = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16", "F32")


@dataclass(frozen=True)
class ServedModel:
    path: Path  # the .gguf llama.cpp loads
    name: str  # what /v1/models lists
    artifact: Artifact | None = None


def _pick_gguf(folder: Path, ref: str) -> Path:
    found = {p.stem: p for p in folder.glob("*.gguf")}
    for qtype in PREFERRED_TYPES:
        if qtype in found:
            return found[qtype]
    if found:
        return sorted(found.values())[0]
    raise ArtifactError(f"'{ref}': no .gguf file in {folder}")


def unpack_zst(packed: Path) -> Path:
    """A `.gguf.zst` from the pack stage, decompressed once into a cache file beside it.

    Seam: the compress area owns the pack format (it may add a zstd dictionary); when its unpack
    function exists it is used, otherwise a plain zstd frame is decompressed here.
    """
    target = packed.with_suffix("")  # x.gguf.zst -> x.gguf
    if target.is_file() and target.stat().st_mtime >= packed.stat().st_mtime:
        return target
    try:
        from cogumi.compress.zstd_pack import unpack_file  # the compress area's format (dictionary, sha256)
    except ImportError:
        unpack_file = None
    if unpack_file is not None:
        unpack_file(packed, target)
        return target
    import zstandard

    tmp = target.with_suffix(".gguf.part")
    with open(packed, "rb") as src, open(tmp, "wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    tmp.rename(target)
    log.info("unpacked %s -> %s", packed, target)
    return target


def resolve_gguf(ref: str, model: ModelSpec, store: ArtifactStore) -> ServedModel:
    """`base` = the model group's GGUF; a `.gguf` / `.gguf.zst` path; or an artifact ref
    (`latest:gguf`, `gguf/<name>`, `promoted:<name>`, `latest:pack`)."""
    if ref in ("base", "", None):
        if not model.gguf:
            raise ConfigError(f"model '{model.name}' has no `gguf:` in conf/model/{model.name}.yaml; "
                              "set stage.run.model to a GGUF artifact or file")
        path = Path(model.gguf)
        if not path.is_file():
            raise ArtifactError(f"GGUF '{path}' of model '{model.name}' is missing: run `make setup`")
        return ServedModel(path, model.name)
    path = Path(ref)
    if path.is_file() and path.name.endswith(".gguf"):
        return ServedModel(path, path.stem)
    if path.is_file() and path.name.endswith(".gguf.zst"):
        return ServedModel(unpack_zst(path), path.name.removesuffix(".gguf.zst"))
    if path.suffix in (".gguf", ".zst"):
        raise ConfigError(f"stage.run.model='{ref}': no such file")
    artifact = store.resolve(ref)
    if (artifact.path / "gguf").is_dir():
        gguf = _pick_gguf(artifact.path / "gguf", ref)
    elif (artifact.path / "packed").is_dir():
        packed = sorted((artifact.path / "packed").glob("*.gguf.zst"))
        if not packed:
            raise ArtifactError(f"'{ref}': no .gguf.zst in {artifact.path / 'packed'}")
        gguf = unpack_zst(packed[0])
    else:
        raise ArtifactError(f"'{ref}' ({artifact.path}) holds no gguf/ or packed/ folder")
    return ServedModel(gguf, f"{model.name}-{artifact.stage}-{gguf.stem}".lower(), artifact)
