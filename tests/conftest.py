import os
import subprocess
import sys
from pathlib import Path

import pytest

from cogumi.assets import embedded_model_dir
from cogumi.paths import PROJECT_ROOT

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    """A private outputs folder, for this process and the entry points it starts."""
    folder = tmp_path / "outputs"
    monkeypatch.setenv("COGUMI_OUTPUTS", str(folder))
    return folder


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    folder = embedded_model_dir()
    if not (folder / "config.json").is_file():
        pytest.fail(f"embedded model missing at {folder}: run `make setup` first")
    return folder


def run_entry(entry: str, *overrides: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run an entry point as a person would, from the project root."""
    return subprocess.run([sys.executable, str(PROJECT_ROOT / f"{entry}.py"), *overrides], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout, **kwargs)
