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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def local_teacher(embedded_model, tmp_path_factory):
    """A real OpenAI-compatible server (llama.cpp's) on loopback, serving the embedded GGUF."""
    import time
    import urllib.request

    from cogumi.teachers.spec import TeacherSpec

    port = _free_port()
    # The server logs a lot at start; a file, unlike a pipe, never fills up and blocks it.
    log_path = tmp_path_factory.mktemp("teacher") / "server.log"
    log_file = open(log_path, "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model / "source.gguf"),
         "--model_alias", "smollm2-135m", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         "--n_threads", "2"],
        stdout=log_file, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"llama_cpp.server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
    yield TeacherSpec(name="local-test", base_url=base_url, model="smollm2-135m", api_key_env=None,
                      usd_per_1m_input=1.0, usd_per_1m_output=2.0)
    server.terminate()
    server.wait(timeout=30)
    log_file.close()
