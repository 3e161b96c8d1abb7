"""Which GGUF file (and LoRA adapter) a model ref stands for when it is evaluated through llama.cpp.

- a `.gguf` path: that file;
- an artifact with `gguf/`: its `gguf/<gguf_type>.gguf` (or the first one);
- an HF model (`base` with gguf_type=F16|BF16|F32, or an artifact with `model/`): its export by
  llama.cpp's converter (F16 unless gguf_type names another export type), cached under
  `<outputs>/cache/gguf/<content hash>/` so both sides of a gate are scored at the same precision and
  the export (~6 s for 135M) happens once per model. BF16 scores ~1.5x faster than F16 on CPUs with
  AVX512-BF16 (benchmarks/eval_loglikelihood.py) and picks the same options as the HF fp32 model;
- `base` without gguf_type: the model group's own GGUF (the shipped file of the embedded model).
"""

import logging
import os
import shutil
from pathlib import Path

from cogumi.artifacts import Artifact, input_record
from cogumi.errors import ConfigError

log = logging.getLogger(__name__)

EXPORT_TYPES = ("F16", "BF16", "F32")  # what llama.cpp's converter writes from an HF folder
EXPORT_TYPE = "F16"  # the default export
LORA_FILE = "lora/adapter.gguf"


def gguf_file(ctx, model: str, gguf_type: str | None) -> tuple[str, "Artifact | str"]:
    """(path of the .gguf llama.cpp loads, identity of the model for the manifest)."""
    if model.endswith(".gguf"):
        if not Path(model).is_file():
            raise ConfigError(f"stage.run.model={model}: no such GGUF file")
        return model, model
    if model == "base":
        if gguf_type and gguf_type.upper() in EXPORT_TYPES:
            return str(export_hf(ctx, Path(ctx.model.source), ctx.model.source, gguf_type)), ctx.model.source
        if not ctx.model.gguf:
            raise ConfigError(f"model '{ctx.model.name}' names no gguf file: give stage.run.model=<artifact or .gguf> "
                              f"or stage.run.gguf_type=<one of {list(EXPORT_TYPES)}> (export the HF model)")
        return ctx.model.gguf, ctx.model.gguf
    artifact = ctx.store.resolve(model)
    files = sorted((artifact.path / "gguf").glob("*.gguf"))
    if not files and (artifact.path / "model").is_dir():
        if gguf_type and gguf_type.upper() not in EXPORT_TYPES:
            raise ConfigError(f"artifact {artifact.ref} is an HF model: kind=gguf evaluates its export to one of "
                              f"{list(EXPORT_TYPES)}, not gguf_type={gguf_type}")
        return str(export_hf(ctx, artifact.path / "model", artifact, gguf_type or EXPORT_TYPE)), artifact
    chosen = [f for f in files if gguf_type is None or f.stem.upper() == gguf_type.upper()]
    if not chosen:
        raise ConfigError(f"artifact {artifact.ref} has no gguf/{gguf_type or '*'}.gguf "
                          f"(has: {[f.name for f in files]}); set stage.run.gguf_type")
    return str(chosen[0]), artifact


def export_hf(ctx, model_dir: Path, identity: "Artifact | str", export_type: str = EXPORT_TYPE) -> Path:
    """The GGUF export (F16, BF16 or F32) of an HF folder, made once and cached by the model's content hash."""
    from cogumi.assets import converter_dir
    from cogumi.compress.gguf_export import convert_hf_to_gguf

    export_type = export_type.upper()
    digest = input_record("model", identity)["sha256"][:16]
    target = ctx.outputs_root / "cache" / "gguf" / digest / f"{export_type}.gguf"
    if target.is_file():
        return target
    scratch = target.parent.with_name(f".tmp-{digest}-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    log.info("exporting %s to %s GGUF for llama.cpp evaluation", model_dir, export_type)
    convert_hf_to_gguf(Path(model_dir), scratch / target.name, converter_dir(), export_type)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(scratch / target.name, target)  # atomic: a reader sees no file or the whole file
    shutil.rmtree(scratch, ignore_errors=True)
    return target


def lora_file(ctx, lora: str | None) -> tuple[str | None, "Artifact | str | None"]:
    """(adapter .gguf path, its identity) of a `lora` knob: a .gguf path or an artifact holding lora/adapter.gguf."""
    if not lora:
        return None, None
    if lora.endswith(".gguf"):
        if not Path(lora).is_file():
            raise ConfigError(f"stage.run.lora={lora}: no such GGUF LoRA file")
        return lora, lora
    artifact = ctx.store.resolve(lora)
    path = artifact.path / LORA_FILE
    if not path.is_file():
        raise ConfigError(f"stage.run.lora={lora}: artifact {artifact.ref} holds no {LORA_FILE}")
    return str(path), artifact
