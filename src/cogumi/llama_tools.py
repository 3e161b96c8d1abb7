"""llama.cpp's own command-line tools, built once at setup from the llama.cpp that llama-cpp-python vendors.

`llama-server` (serving), `llama-imatrix`, `llama-perplexity` and `llama-quantize` (compression) come
from the same llama.cpp sources as the installed Python binding, so a GGUF the binding reads is one
the tools read. Only those four targets are built (CPU, Release, static): the finished binaries are
copied into `tools_dir()` together with `build.json`, by an atomic rename, so an interrupted build is
never taken as complete and a second setup skips in milliseconds. The cmake build folder is kept:
a build interrupted midway resumes where it stopped.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from cogumi.errors import AssetMissingError, ConfigError
from cogumi.paths import cache_dir

log = logging.getLogger(__name__)

TOOLS = ("llama-server", "llama-imatrix", "llama-perplexity", "llama-quantize")

# What is built, and how. GGML_NATIVE stays at its default (ON), as in the llama-cpp-python wheel
# built on this machine. Tests/examples/the unified app are not needed; the web UI would be
# downloaded from a hub (there is none offline) and HTTPS is not needed for a loopback server.
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)

# The parts of the sdist's vendor/llama.cpp the build reads (models/, docs/, tests/ are 110 MB unused).
SOURCE_MEMBERS = tuple(
    f"vendor/llama.cpp/{part}"
    for part in ("CMakeLists.txt", "LICENSE", "cmake/*", "ggml/*", "src/*", "include/*", "common/*",
                 "tools/*", "vendor/*", "licenses/*", "scripts/*")
)


def llama_cpp_version() -> str:
    return metadata.version("llama_cpp_python")


def root_dir() -> Path:
    return cache_dir() / "llama.cpp"


def source_dir() -> Path:
    """The vendored llama.cpp sources, extracted from the llama-cpp-python sdist."""
    return root_dir() / "src"


def build_dir() -> Path:
    return root_dir() / "build"


def tools_dir() -> Path:
    """The finished binaries; present only when every tool was built."""
    return root_dir() / "bin"


def _build_record() -> dict | None:
    record = tools_dir() / "build.json"
    return json.loads(record.read_text()) if record.is_file() else None


def tools_built() -> bool:
    """All tools there, built from the llama.cpp of the installed llama-cpp-python."""
    record = _build_record()
    return (record is not None and record.get("llama_cpp_python") == llama_cpp_version()
            and all((tools_dir() / name).is_file() for name in TOOLS))


def tool_path(name: str) -> Path:
    """Path of a built llama.cpp tool, or a clear error saying how to get it."""
    if name not in TOOLS:
        raise ConfigError(f"unknown llama.cpp tool {name!r}: cogumi builds {', '.join(TOOLS)}")
    path = tools_dir() / name
    if _build_record() is None or not path.is_file():
        raise AssetMissingError(f"{name} is not built: run `make setup` (python -m cogumi setup); expected {path}")
    return path


def _run_logged(cmd: list[str], logfile, progress: tqdm | None = None) -> None:
    """Run a command, its output into the log file; ninja's `[done/total]` lines move the progress bar."""
    logfile.write(f"$ {' '.join(cmd)}\n")
    logfile.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        logfile.write(line)
        step = re.match(r"\[(\d+)/(\d+)\]", line)
        if progress is not None and step:
            progress.total = int(step.group(2))
            progress.n = int(step.group(1))
            progress.refresh()
    if proc.wait() != 0:
        raise AssetMissingError(f"`{' '.join(cmd[:3])} ...` failed (exit {proc.returncode}): see {logfile.name}")


def build_tools(jobs: int = 2) -> Path:
    """Configure and build the four tools from `source_dir()`; returns `tools_dir()`."""
    if tools_built():
        return tools_dir()
    if not (source_dir() / "CMakeLists.txt").is_file():
        raise AssetMissingError(f"llama.cpp sources missing in {source_dir()}: run `make setup`")
    if shutil.which("cmake") is None:
        raise AssetMissingError("cmake is not installed: the llama.cpp tools build needs cmake and a C++ compiler")
    build_dir().mkdir(parents=True, exist_ok=True)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    started = time.perf_counter()
    log_path = build_dir() / "build.log"
    log.info("building %s from llama-cpp-python %s sources (-j%d, log: %s)",
             ", ".join(TOOLS), llama_cpp_version(), jobs, log_path)
    with open(log_path, "a") as logfile:
        if not (build_dir() / "CMakeCache.txt").is_file():
            _run_logged(["cmake", "-S", str(source_dir()), "-B", str(build_dir()), *generator, *CMAKE_OPTIONS], logfile)
        with tqdm(desc="llama.cpp tools build", unit="step", total=None) as progress:
            _run_logged(["cmake", "--build", str(build_dir()), "--config", "Release", "-j", str(jobs),
                         "--target", *TOOLS], logfile, progress if generator else None)
    seconds = time.perf_counter() - started
    _install(seconds)
    log.info("llama.cpp tools built in %.0f s -> %s", seconds, tools_dir())
    return tools_dir()


def _install(seconds: float) -> None:
    """Copy the binaries into a temporary folder and rename it into place: all or nothing."""
    root_dir().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bin-", dir=root_dir()))
    for name in TOOLS:
        built = build_dir() / "bin" / name
        if not built.is_file():
            shutil.rmtree(tmp)
            raise AssetMissingError(f"the llama.cpp build produced no {built}: see {build_dir() / 'build.log'}")
        shutil.copy2(built, tmp / name)
    record = {"llama_cpp_python": llama_cpp_version(), "tools": list(TOOLS), "cmake_options": list(CMAKE_OPTIONS),
              "build_seconds": round(seconds, 1)}
    (tmp / "build.json").write_text(json.dumps(record, indent=2))
    shutil.rmtree(tools_dir(), ignore_errors=True)
    os.rename(tmp, tools_dir())
