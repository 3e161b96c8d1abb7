"""Start `serve.py` in a child process on a free loopback port and wait until it answers /health.

Used by the tests, the benchmarks and `python -m cogumi chat --serve`; the child is stopped with
SIGTERM so it writes its session record.
"""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from cogumi.errors import CogumiError
from cogumi.paths import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base_url: str, process: subprocess.Popen | None = None, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise CogumiError(f"serve.py exited with code {process.returncode} before answering")
        try:
            return httpx.get(f"{base_url}/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.3)
    raise CogumiError(f"{base_url}/health did not answer within {timeout:.0f} s")


@contextmanager
def running_server(*overrides: str, env: dict | None = None, log_path: str | Path | None = None,
                   timeout: float = 180):
    """Yield (base_url without /v1, process). Extra Hydra overrides go to serve.py."""
    port = free_port()
    child_env = {**os.environ, **(env or {})}
    log_file = open(log_path, "w") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "serve.py"), f"stage.run.port={port}", "stage.run.host=127.0.0.1",
         "logger=none", *overrides], cwd=PROJECT_ROOT, env=child_env, stdout=log_file, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process, timeout)
        yield base_url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_path:
            log_file.close()
