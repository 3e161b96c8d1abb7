"""sha256 of files and folders, cached by (path, size, mtime) so unchanged big models hash once."""

import hashlib
import json
import os
from pathlib import Path

from cogumi.paths import cache_dir

_CHUNK = 1 << 20
_memory: dict[str, str] = {}


def _cache_file() -> Path:
    return cache_dir() / "sha256-cache.json"


def _load_cache() -> dict[str, str]:
    if not _memory and _cache_file().exists():
        try:
            _memory.update(json.loads(_cache_file().read_text()))
        except (OSError, json.JSONDecodeError):
            pass  # a damaged cache only costs re-hashing
    return _memory


def _save_cache() -> None:
    path = _cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_memory))
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = _load_cache()
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    cache[key] = digest.hexdigest()
    if stat.st_size > 16 * _CHUNK:  # persist only what is worth not hashing again
        _save_cache()
    return cache[key]


def sha256_path(path: Path) -> str:
    """A file's sha256, or for a folder the sha256 of its sorted (relative path, file sha256) list."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    listing = [
        f"{file.relative_to(path).as_posix()} {sha256_file(file)}"
        for file in sorted(path.rglob("*"))
        if file.is_file()
    ]
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
