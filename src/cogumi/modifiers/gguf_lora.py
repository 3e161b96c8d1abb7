"""PEFT adapter → GGUF LoRA with llama.cpp's own `convert_lora_to_gguf.py` (vendored with the HF converter).

Offline: `--base` is the HF folder the adapter was trained on (the converter reads its config from
there instead of the hub). llama.cpp applies the result at run time (`Llama(lora_path=...)`,
llama-server's per-request LoRA) on any GGUF of that same base.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from cogumi.errors import AssetMissingError, ConfigError
from cogumi.compress.gguf_export import GGUFExportError

log = logging.getLogger(__name__)

OUTTYPES = ("f32", "f16", "bf16", "q8_0")
TIED_TARGETS = {"lm_head", "embed_tokens"}  # one tensor on tied-embedding models: a LoRA on it is not portable


def check_targets(base_dir: Path, target_modules) -> None:
    """Never a LoRA on lm_head / embed_tokens when the base ties its input and output embeddings."""
    config = json.loads((Path(base_dir) / "config.json").read_text())
    hit = TIED_TARGETS & set(target_modules or ())
    if config.get("tie_word_embeddings") and hit:
        raise ConfigError(f"stage.run.target_modules names {sorted(hit)}, but {base_dir} ties its embeddings "
                          "(tie_word_embeddings: true): leave them out")


def convert_lora(adapter_dir: Path, base_dir: Path, out_file: Path, converter_dir: Path, outtype: str = "f16") -> Path:
    script = converter_dir / "convert_lora_to_gguf.py"
    if not script.is_file():
        raise AssetMissingError(f"{script} is missing: run `python -m cogumi setup` (it extracts llama.cpp's converters)")
    if outtype not in OUTTYPES:
        raise ConfigError(f"stage.run.lora_outtype={outtype}: expected one of {OUTTYPES}")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(converter_dir / "gguf-py"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(script), str(adapter_dir), "--base", str(base_dir), "--outtype", outtype,
           "--outfile", str(out_file)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not out_file.is_file():
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise GGUFExportError(f"convert_lora_to_gguf.py failed on {adapter_dir} (exit {result.returncode}):\n{tail}")
    log.info("GGUF LoRA %s (%.2f MB)", out_file, out_file.stat().st_size / 2**20)
    return out_file


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return round(sum(f.stat().st_size for f in files) / 2**20, 3)
