"""Where the project keeps things: its root, the offline asset cache and the outputs folder."""

import os
from pathlib import Path

# src/cogumi/paths.py -> the checkout root. Cogumi is used from a checkout (the entry scripts and
# conf/ live there), so the root is known from this file's place.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"


def cache_dir() -> Path:
    """The offline asset cache the setup fills (model, converter, data files)."""
    return Path(os.environ.get("COGUMI_CACHE", PROJECT_ROOT / ".cache" / "cogumi"))


def outputs_dir() -> Path:
    return Path(os.environ.get("COGUMI_OUTPUTS", PROJECT_ROOT / "outputs"))
