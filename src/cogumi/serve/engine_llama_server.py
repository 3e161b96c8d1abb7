"""`engine=llama-server`: llama.cpp's own server (built at setup from the vendored llama.cpp), started
and supervised by serve.py on a private loopback port, with `--parallel` slots (continuous batching)
and every modifier loaded once at scale 0 (`--lora-init-without-apply`), switched on per request by
the `lora` field. It stops with serve.py (and with its death: PR_SET_PDEATHSIG on Linux).
"""

import ctypes
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cogumi.errors import CogumiError
from cogumi.serve.engine_local import ChatTemplate
from cogumi.serve.engine_upstream import UpstreamEngine
from cogumi.serve.launch import free_port

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


class LlamaServerEngine(UpstreamEngine):
    def __init__(self, gguf_path: Path, name: str, modifiers: dict[str, Path] | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None, parallel: int = 4, binary: str | None = None,
                 startup_timeout: float = 120, log_path: str | Path | None = None):
        if binary:
            server = Path(binary)
        else:
            from cogumi.llama_tools import tool_path

            server = tool_path("llama-server")
        if not server.is_file():
            raise CogumiError(f"stage.run.llama_server.binary={server}: no such file")
        modifiers = dict(modifiers or {})
        port = free_port()
        command = [str(server), "-m", str(gguf_path), "--host", "127.0.0.1", "--port", str(port),
                   "-c", str(n_ctx * parallel), "-np", str(parallel), "--no-webui", "--lora-init-without-apply"]
        if n_threads:
            command += ["-t", str(n_threads), "-tb", str(n_threads)]
        for path in modifiers.values():
            command += ["--lora", str(path)]
        self.log_path = Path(log_path) if log_path else None
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        log.info("starting llama-server: %s", " ".join(command))
        self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        root = f"http://127.0.0.1:{port}"
        try:
            self._wait_ready(root, startup_timeout)
            # Adapter ids follow the --lora order; check the server agrees before relying on it.
            listed = httpx.get(f"{root}/lora-adapters", timeout=10).json()
            if [Path(a["path"]).resolve() for a in listed] != [Path(p).resolve() for p in modifiers.values()]:
                raise CogumiError(f"llama-server lists adapters {listed}, expected {list(modifiers.values())}")
            if listed:
                # --lora-init-without-apply still lists scale 1.0 here: set the global scales to 0 explicitly,
                # so a request that names no adapter gets the bare base.
                httpx.post(f"{root}/lora-adapters", json=[{"id": a["id"], "scale": 0.0} for a in listed],
                           timeout=10).raise_for_status()
        except BaseException:
            self._stop()
            raise
        super().__init__(f"{root}/v1", name, name=name, lora_ids={d: i for i, d in enumerate(modifiers)},
                         template=ChatTemplate.from_gguf(Path(gguf_path)), n_ctx=n_ctx, parallel=parallel)
        self.info = {"engine": "llama-server", "binary": str(server), "url": root, "parallel": parallel,
                     "pid": self.process.pid, "n_threads": n_threads}

    def _wait_ready(self, root: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise CogumiError(f"llama-server exited with code {self.process.returncode} while starting"
                                  + (f" (log: {self.log_path})" if self.log_path else ""))
            try:
                if httpx.get(f"{root}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise CogumiError(f"llama-server did not become healthy within {timeout:.0f} s")

    def _stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log.info("llama-server (pid %d) stopped", self.process.pid)

    def close(self) -> None:
        super().close()
        self._stop()
