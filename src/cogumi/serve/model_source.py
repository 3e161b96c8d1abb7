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


def _type_of(path: Path) -> str:
    return path.name.split(".gguf")[0]


def _pick(folder: Path, suffix: str, ref: str) -> Path:
    """The preferred quantization type among `<TYPE><suffix>` files (Q4_K_M first)."""
    found = {_type_of(p): p for p in folder.glob(f"*{suffix}")}
    for qtype in PREFERRED_TYPES:
        if qtype in found:
            return found[qtype]
    if found:
        return found[sorted(found)[0]]
    raise ArtifactError(f"'{ref}': no {suffix} file in {folder}")


def unpack_zst(packed: Path) -> Path:
    """A `.gguf.zst` from the pack stage, unpacked once into the cache (never into the artifact).

    The compress area owns the pack format (dictionary + sha256 sidecar) and its loader hook;
    without it (an older checkout), a plain zstd frame is decompressed here.
    """
    try:
        from cogumi.compress.zstd_pack import unpacked_gguf
    except ImportError:
        unpacked_gguf = None
    if unpacked_gguf is not None:
        return Path(unpacked_gguf(packed))
    import zstandard

    from cogumi.hashing import sha256_file
    from cogumi.paths import cache_dir

    target = cache_dir() / "unpacked" / f"{sha256_file(packed)[:16]}-{packed.name.removesuffix('.zst')}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
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
        gguf = _pick(artifact.path / "gguf", ".gguf", ref)
    elif (artifact.path / "packed").is_dir():
        packed = _pick(artifact.path / "packed", ".gguf.zst", ref)
        return ServedModel(unpack_zst(packed), f"{model.name}-{artifact.stage}-{_type_of(packed)}".lower(),
                           artifact)
    else:
        raise ArtifactError(f"'{ref}' ({artifact.path}) holds no gguf/ or packed/ folder")
    return ServedModel(gguf, f"{model.name}-{artifact.stage}-{_type_of(gguf)}".lower(), artifact)


def resolve_served(ref: str, model: ModelSpec, store: ArtifactStore) -> ServedModel:
    """`auto` = what the pipeline built: `promoted:student`'s GGUF, else the latest GGUF artifact, else
    the model group's GGUF. Any other value goes to `resolve_gguf`."""
    if ref != "auto":
        return resolve_gguf(ref, model, store)
    try:
        student = store.resolve("promoted:student")
    except ArtifactError:
        student = None
    if student is not None:
        if (student.path / "gguf").is_dir() or (student.path / "packed").is_dir():
            return resolve_gguf(str(student.path), model, store)
        # The gate promotes the HF student; its GGUF is the newest gguf artifact made from it.
        for artifact in reversed(store.artifacts("gguf")):
            if any(record.get("path") == str(student.path) for record in artifact.manifest.get("inputs", [])):
                return resolve_gguf(str(artifact.path), model, store)
        log.warning("promoted:student (%s) has no GGUF export yet: falling back", student.ref)
    if store.artifacts("gguf"):
        return resolve_gguf("latest:gguf", model, store)
    return resolve_gguf("base", model, store)
