"""API keys (sha256-hashed at rest, compared in constant time) and a per-key rate limit.

Keys file: one `<name> sha256:<hex>` per line (`#` comments). Make a key with
`python -m cogumi.serve.auth <keys-file> <name>`: it appends the hash and prints the key once.
The env var (default COGUMI_API_KEYS) may hold plain keys, comma-separated; they are hashed on load.
"""

import hashlib
import hmac
import math
import os
import secrets
import sys
import threading
import time
from pathlib import Path

from cogumi.errors import ConfigError


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Hashed keys by name. An empty ring means the server runs without auth (loopback only)."""

    def __init__(self, hashed: dict[str, str]):
        self._hashed = dict(hashed)  # name -> "sha256:<hex>"

    @classmethod
    def load(cls, keys_file: str | None, env_var: str | None) -> "KeyRing":
        hashed = {}
        if keys_file:
            path = Path(keys_file)
            if not path.is_file():
                raise ConfigError(f"stage.run.auth.keys_file='{keys_file}': no such file")
            for number, line in enumerate(path.read_text().splitlines(), 1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                if len(parts) != 2 or not parts[1].startswith("sha256:") or len(parts[1]) != 71:
                    raise ConfigError(f"{keys_file}:{number}: expected '<name> sha256:<64 hex>'")
                hashed[parts[0]] = parts[1]
        if env_var and os.environ.get(env_var):
            for index, key in enumerate(k.strip() for k in os.environ[env_var].split(",")):
                if key:
                    hashed[f"env-{index}"] = hash_key(key)
        return cls(hashed)

    @property
    def enabled(self) -> bool:
        return bool(self._hashed)

    def identify(self, presented: str | None) -> str | None:
        """The key's name, or None. Every stored hash is compared, so timing says nothing."""
        if not presented:
            return None
        digest = hash_key(presented)
        match = None
        for name, stored in self._hashed.items():
            if hmac.compare_digest(digest, stored):
                match = name
        return match


class RateLimiter:
    """Token bucket per key: `per_minute` sustained, `burst` at once. 0 = unlimited."""

    def __init__(self, per_minute: float, burst: int):
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def check(self, key: str) -> float:
        """0 if the request may go ahead (and it is counted), else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def add_key(keys_file: str, name: str) -> str:
    """Create a key, append its hash to the file, return the key (shown once, never stored)."""
    key = "cog-" + secrets.token_urlsafe(24)
    path = Path(keys_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        out.write(f"{name} {hash_key(key)}\n")
    os.chmod(path, 0o600)
    return key


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m cogumi.serve.auth <keys-file> <name>")
    print(add_key(sys.argv[1], sys.argv[2]))
