"""What a manifest records about where a result came from: package versions, git commit, memory."""

import platform
import resource
import subprocess
import sys
from functools import cache
from importlib import metadata

from cogumi.paths import PROJECT_ROOT

_TRACKED_PACKAGES = (
    "cogumi", "torch", "transformers", "peft", "lightning", "accelerate", "datasets", "llmcompressor",
    "compressed-tensors", "llama_cpp_python", "lm_eval", "hydra-core", "omegaconf", "optuna",
    "datasketch", "zstandard", "scikit-learn", "sentence-transformers", "bitsandbytes", "wandb", "openai",
)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@cache
def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except OSError:
        return {"commit": None, "dirty": None}


def environment_record() -> dict:
    return {
        "versions": {"python": sys.version.split()[0], **package_versions()},
        "git": git_state(),
        "host": {"platform": platform.platform(), "machine": platform.machine()},
    }
