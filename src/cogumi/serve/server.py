"""`python serve.py` (stage=serve): load a GGUF on llama.cpp and serve the OpenAI-compatible API.

Serving is long-running, so its artifact is a session record written when the server stops
(Ctrl-C / SIGTERM): the served model and its sha256, the limits, and request/token counts.
The per-request log is a JSONL file (`request_log`), appended to while the server runs.
"""

import ipaddress
import json
import logging
import os
import signal

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.hashing import sha256_file
from cogumi.stage import StageContext

log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _stop(signum, frame):
    raise KeyboardInterrupt


def build_server(ctx: StageContext, model: str, n_ctx: int, keys_file: str | None, keys_env: str | None,
                 limits: dict, request_log: str | None, log_prompts: bool, host: str = "127.0.0.1",
                 port: int = 8000, chat_page: bool = False):
    """(app, served model, runtime): everything but the socket, so tests and benchmarks share it."""
    from cogumi.serve.app import build_app
    from cogumi.serve.auth import KeyRing
    from cogumi.serve.gate import Gate, Limits
    from cogumi.serve.model_source import resolve_gguf
    from cogumi.serve.monitoring import RequestLog
    from cogumi.serve.runtime import LlamaRuntime

    try:
        limit_values = Limits(**limits)
    except TypeError as err:
        raise ConfigError(f"conf/stage/serve.yaml limits: {err}")
    keys = KeyRing.load(keys_file, keys_env)
    if not keys.enabled and not _is_loopback(host):
        raise ConfigError(f"stage.run.host={host} is not loopback and no API keys are configured "
                          f"(stage.run.keys_file or ${keys_env}): refusing to serve without auth")
    if not keys.enabled:
        log.warning("no API keys configured: auth is off (loopback only)")
    served = resolve_gguf(model, ctx.model, ctx.store)
    sha = sha256_file(served.path)
    log.info("serving %s = %s (sha256 %s)", served.name, served.path, sha)
    runtime = LlamaRuntime(served.path, served.name, n_ctx=n_ctx,
                           n_threads=ctx.hardware.threads or os.cpu_count(), seed=int(ctx.config.get("seed", 0)))
    info = {"model_path": str(served.path), "model_sha256": sha,
            "artifact": served.artifact.ref if served.artifact else None, "auth": keys.enabled}
    app = build_app(runtime, Gate(keys, limit_values), RequestLog(request_log, log_prompts), info)
    if chat_page:
        from cogumi.serve.chat_page import mount_chat_page

        loopback = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        app = mount_chat_page(app, f"http://{loopback}:{port}/v1", runtime.models(),
                              ctx.outputs_root / "chat" / "exports")
    return app, served, info


def run(ctx: StageContext, model: str, host: str, port: int, n_ctx: int, keys_file: str | None,
        keys_env: str | None, limits: dict, request_log: str | None, log_prompts: bool,
        chat_page: bool) -> Artifact:
    import uvicorn

    if not 0 < port < 65536:
        raise ConfigError(f"stage.run.port={port}: expected 1..65535")
    app, served, info = build_server(ctx, model, n_ctx, keys_file, keys_env, limits, request_log,
                                     log_prompts, host, port, chat_page)
    log.info("OpenAI API on http://%s:%d/v1 · chat page %s · request log %s", host, port,
             f"on http://{host}:{port}/chat/" if chat_page else "off", request_log)
    # uvicorn re-raises the stop signal after its graceful shutdown; turn it into an exception here so
    # the session record below is still written.
    signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
    except KeyboardInterrupt:
        pass
    log.info("server stopped")

    # Stopped: record the session.
    with ctx.create_artifact({"model": served.artifact or served.path}) as out:
        out.metrics.update(app.state.metrics.summary())
        out.extra["served"] = {**info, "host": host, "port": port, "request_log": request_log}
        (out.dir / "session.json").write_text(json.dumps({**info, "metrics": out.metrics}, indent=2))
    return out.artifact
