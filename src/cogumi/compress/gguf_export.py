"""HF folder → F16 GGUF (llama.cpp's own converter) → llama.cpp quant types (`llama_model_quantize`).

The converter comes from the llama-cpp-python sdist with its own `gguf-py` (PyPI's `gguf` is too old
for it, TOOLCHAIN.md), so it runs as a subprocess with that folder first on PYTHONPATH.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from cogumi.compress import llama_cli
from cogumi.errors import AssetMissingError, CogumiError, ConfigError

log = logging.getLogger(__name__)

# Output types the converter writes directly (the reference every quant type is compared to).
CONVERTER_TYPES = ("F32", "F16", "BF16")


class GGUFExportError(CogumiError):
    """The converter or llama.cpp's quantizer failed."""


def ftype_of(quant_type: str) -> int:
    """llama.cpp's ftype constant for a quant type name such as Q4_K_M; a clear error otherwise."""
    import llama_cpp

    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant_type.upper()}", None)
    if value is None:
        known = sorted(n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_MOSTLY_"))
        raise ConfigError(f"stage.run.types: unknown llama.cpp quant type '{quant_type}' (known: {', '.join(known)})")
    return value


def is_compressed_tensors(model_dir: Path) -> bool:
    """True for a folder saved by llm-compressor in a packed compressed-tensors format."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    quant = config.get("quantization_config") or {}
    return quant.get("quant_method") == "compressed-tensors"


def decompress_to_dense(model_dir: Path, target: Path) -> Path:
    """A dense fp32 copy of a compressed-tensors model (llama.cpp's converter reads only dense weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("decompressing compressed-tensors model %s to dense fp32", model_dir)
    from transformers import CompressedTensorsConfig

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 quantization_config=CompressedTensorsConfig(run_compressed=False))
    if any(name.endswith("weight_packed") for name, _ in model.named_parameters()):
        raise GGUFExportError(f"{model_dir}: transformers left the weights packed; cannot export them densely")
    # transformers decompresses on load (weights become dequantized floats) but keeps the
    # quantization parameters, which the converter cannot map: drop them.
    dropped = 0
    for module in model.modules():
        for name in [n for n in module._parameters if n.startswith("weight_") or n.startswith("input_")]:
            module._parameters.pop(name)
            dropped += 1
        for attr in ("quantization_scheme", "quantization_status"):
            if hasattr(module, attr):
                delattr(module, attr)
    log.info("dropped %d quantization parameters", dropped)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)
    return target


def byte_level_view(model_dir: Path, scratch: Path) -> Path:
    """The folder as the converter should see it: a byte-level BPE tokenizer with a plain ByteLevel decoder.

    transformers' GGUF→HF tokenizer conversion (how the embedded student was made) writes a decoder
    *sequence* (ByteFallback, Fuse, Replace, ByteLevel). llama.cpp's converter then takes the vocabulary
    for a Llama SentencePiece-style BPE, writes pre-tokenizer `default`, and llama.cpp aborts when it
    tokenizes a space. A folder of symlinks with the decoder reduced to ByteLevel converts correctly
    (pre-tokenizer `smollm` for SmolLM2); other folders are returned as they are.
    """
    tokenizer_file = Path(model_dir) / "tokenizer.json"
    if not tokenizer_file.is_file():
        return Path(model_dir)
    tokenizer = json.loads(tokenizer_file.read_text())
    decoder, pre = tokenizer.get("decoder") or {}, tokenizer.get("pre_tokenizer") or {}
    byte_level = [d for d in decoder.get("decoders", []) if d.get("type") == "ByteLevel"]
    if decoder.get("type") != "Sequence" or pre.get("type") != "ByteLevel" or not byte_level:
        return Path(model_dir)
    view = scratch / "converter-view"
    view.mkdir(parents=True)
    for item in Path(model_dir).iterdir():
        if item.name != "tokenizer.json":
            (view / item.name).symlink_to(item.resolve())
    tokenizer["decoder"] = byte_level[0]
    (view / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    log.info("%s: tokenizer decoder reduced to ByteLevel for llama.cpp's converter", model_dir)
    return view


def convert_hf_to_gguf(model_dir: Path, out_file: Path, converter_dir: Path, outtype: str = "F16") -> Path:
    """Run llama.cpp's convert_hf_to_gguf.py on an HF folder (dense weights) into `out_file`."""
    script = converter_dir / "convert_hf_to_gguf.py"
    if not (converter_dir / "conversion").is_dir() or not script.is_file():
        raise AssetMissingError(f"llama.cpp converter incomplete at {converter_dir}: run `python -m cogumi setup`")
    if outtype.upper() not in CONVERTER_TYPES:
        raise ConfigError(f"stage.run.reference_type={outtype}: the converter writes one of {CONVERTER_TYPES}")
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=out_file.parent.parent))
    model_dir = byte_level_view(model_dir, scratch)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(converter_dir / "gguf-py"), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(script), str(model_dir), "--outtype", outtype.lower(), "--outfile", str(out_file)]
    try:
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if result.returncode != 0 or not out_file.is_file():
        tail = "\n".join(result.stderr.strip().splitlines()[-8:])
        raise GGUFExportError(f"convert_hf_to_gguf.py failed on {model_dir} (exit {result.returncode}):\n{tail}")
    log.info("converted %s -> %s (%.1f MB)", model_dir, out_file, out_file.stat().st_size / 1e6)
    return out_file


@contextmanager
def _captured_stderr():
    """llama.cpp prints a line per tensor on fd 2; keep it out of the console and hand it back."""
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        captured = []
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def quantize_gguf(source: Path, out_file: Path, quant_type: str, threads: int | None = None,
                  imatrix: Path | None = None, extra_args: list[str] = ()) -> dict:
    """llama.cpp quantization of an F16/F32 GGUF; returns notes (how many tensors fell back, the
    types llama.cpp wrote per tensor role). `extra_args` are llama-quantize options such as
    ["--tensor-type", "ffn_down=q6_k"]."""
    import llama_cpp

    if imatrix is not None or extra_args:
        # The binding has no imatrix loader and no per-tensor overrides: llama.cpp's own llama-quantize does both.
        result = llama_cli.quantize(source, out_file, quant_type, imatrix, extra_args=list(extra_args))
        return {"fallback": f"{result['fallback_tensors']} tensor(s) required fallback quantization"
                if result["fallback_tensors"] else None, "imatrix": imatrix is not None,
                "tensor_mix": llama_cli.type_mix(result["tensor_types"])}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_of(quant_type)
    params.nthread = threads or os.cpu_count() or 1
    with _captured_stderr() as captured:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(out_file).encode(), params)
    text = captured[0] if captured else ""
    if code != 0 or not out_file.is_file():
        raise GGUFExportError(f"llama_model_quantize {source} -> {quant_type} failed (code {code}): "
                              f"{' '.join(text.strip().splitlines()[-3:])}")
    # K-quants need rows divisible by 256; narrower models (576 wide) fall back to legacy quants per tensor.
    fallback = [line for line in text.splitlines() if "fallback quantization" in line]
    notes = {"fallback": fallback[0].split("WARNING:")[-1].strip() if fallback else None,
             "tensor_mix": llama_cli.type_mix(llama_cli.tensor_types(text))}
    log.info("%s -> %s (%.1f MB)%s", source.name, out_file.name, out_file.stat().st_size / 1e6,
             f"; {notes['fallback']}" if notes["fallback"] else "")
    return notes
