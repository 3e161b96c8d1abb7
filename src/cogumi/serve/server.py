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


def _component(ref, store, stage: str, loader: str):
    """The router / escalation detector: `auto` = `latest:<stage>` when one exists, null = off, else a ref."""
    if ref in (None, "none", "null"):
        return None, None
    if ref == "auto" and not store.artifacts(stage):
        log.info("no %s artifact under %s: %s off", stage, store.root, stage)
        return None, None
    artifact = store.resolve(f"latest:{stage}" if ref == "auto" else ref)
    import cogumi.router

    return getattr(cogumi.router, loader)(str(artifact.path)), artifact


def _teacher(spec: dict | None, n_ctx: int):
    """The top route: any OpenAI-compatible chat endpoint ({base_url, model, api_key_env})."""
    if not spec:
        return None
    from cogumi.serve.engine_upstream import UpstreamEngine

    missing = [k for k in ("base_url", "model") if not spec.get(k)]
    if missing:
        raise ConfigError(f"stage.run.teacher: {', '.join(missing)} missing")
    key = os.environ.get(spec["api_key_env"]) if spec.get("api_key_env") else None
    return UpstreamEngine(spec["base_url"], spec["model"], name=f"teacher/{spec['model']}", api_key=key,
                          n_ctx=n_ctx, parallel=int(spec.get("parallel", 4)))


def build_engine(engine: str, served, modifiers: dict, host_profile, max_resident_adapters: int, seed: int,
                 llama_server: dict, upstream: dict, outputs_root):
    from cogumi.serve.engine_local import ChatTemplate, LlamaEngine

    if engine == "in-process":
        return LlamaEngine(served.path, served.name, n_ctx=host_profile.n_ctx, n_threads=host_profile.threads,
                           seed=seed, modifiers=modifiers, max_resident_adapters=max_resident_adapters)
    if engine == "llama-server":
        from cogumi.serve.engine_llama_server import LlamaServerEngine

        return LlamaServerEngine(served.path, served.name, modifiers, n_ctx=host_profile.n_ctx,
                                 n_threads=host_profile.threads, parallel=int(llama_server.get("parallel", 4)),
                                 binary=llama_server.get("binary"),
                                 startup_timeout=float(llama_server.get("startup_timeout", 120)),
                                 log_path=outputs_root / "serve" / "llama-server.log")
    if engine == "openai-upstream":
        from cogumi.serve.engine_upstream import UpstreamEngine

        if not upstream.get("base_url") or not upstream.get("model"):
            raise ConfigError("stage.run.engine=openai-upstream needs stage.run.upstream.base_url and .model")
        key = os.environ.get(upstream["api_key_env"]) if upstream.get("api_key_env") else None
        # The local GGUF of the same model, when there is one, gives the template and token counts.
        template = ChatTemplate.from_gguf(served.path) if served is not None else None
        return UpstreamEngine(upstream["base_url"], upstream["model"], name=upstream.get("name") or served.name,
                              api_key=key, modifier_models=dict(upstream.get("modifier_models") or {}),
                              template=template, n_ctx=host_profile.n_ctx, parallel=int(upstream.get("parallel", 4)))
    raise ConfigError(f"stage.run.engine={engine!r}: expected in-process, llama-server or openai-upstream")


def build_server(ctx: StageContext, model: str, keys_file: str | None, keys_env: str | None, limits: dict,
                 request_log: str | None, log_prompts: bool, host: str = "127.0.0.1", port: int = 8000,
                 chat_page: bool = False, n_ctx: int | None = None, n_threads: int | None = None,
                 engine: str = "in-process", modifiers="promoted", router="auto", escalation="auto",
                 mode: str | None = None, probe_tokens: int = 8, max_resident_adapters: int = 8,
                 feedback_log: str | None = None, teacher: dict | None = None, llama_server: dict | None = None,
                 upstream: dict | None = None, router_threads: int | None = None):
    """(app, served model, info): everything but the socket, so tests and benchmarks share it."""
    from cogumi.serve.app import build_app
    from cogumi.serve.auth import KeyRing
    from cogumi.serve.feedback import FeedbackLog
    from cogumi.serve.gate import Gate, Limits
    from cogumi.serve.host import detect_host
    from cogumi.serve.model_source import resolve_served
    from cogumi.serve.modifier_catalog import resolve_modifiers
    from cogumi.serve.monitoring import RequestLog
    from cogumi.serve.routing import MODES, RoutedRuntime

    try:
        limit_values = Limits(**limits)
    except TypeError as err:
        raise ConfigError(f"conf/stage/serve.yaml limits: {err}")
    if mode is not None and mode not in MODES:
        raise ConfigError(f"stage.run.mode={mode}: expected one of {', '.join(MODES)} (or null = detected)")
    keys = KeyRing.load(keys_file, keys_env)
    if not keys.enabled and not _is_loopback(host):
        raise ConfigError(f"stage.run.host={host} is not loopback and no API keys are configured "
                          f"(stage.run.keys_file or ${keys_env}): refusing to serve without auth")
    if not keys.enabled:
        log.warning("no API keys configured: auth is off (loopback only)")
    profile = detect_host(ctx.model.max_seq_len, n_threads or ctx.hardware.threads, n_ctx, mode)
    log.info("host: %d cores, %s GiB, GPU offload %s -> threads=%d n_ctx=%d mode=%s (%s)", profile.cores,
             profile.memory_gb, profile.gpu_offload, profile.threads, profile.n_ctx, profile.mode, profile.chosen)
    served = resolve_served(model, ctx.model, ctx.store)
    sha = sha256_file(served.path)
    log.info("serving %s = %s (sha256 %s)", served.name, served.path, sha)
    loras = resolve_modifiers(modifiers, ctx.store)
    for lora in loras:
        log.info("modifier %s = %s%s", lora.served_name, lora.path, f" ({lora.artifact.ref})" if lora.artifact else "")
    route_model, router_artifact = _component(router, ctx.store, "router", "load_router")
    detector, escalation_artifact = _component(escalation, ctx.store, "escalation", "load_escalation")
    log.info("router: %s · escalation detector: %s", router_artifact.ref if router_artifact else "off (base only)",
             escalation_artifact.ref if escalation_artifact else "off")
    chosen_engine = build_engine(engine, served, {m.domain: m.path for m in loras}, profile, max_resident_adapters,
                                 int(ctx.config.get("seed", 0)), llama_server or {}, upstream or {}, ctx.outputs_root)
    runtime = RoutedRuntime(chosen_engine, route_model, detector, _teacher(teacher, profile.n_ctx), profile.mode,
                            probe_tokens, FeedbackLog(feedback_log))
    info = {"model_path": str(served.path), "model_sha256": sha,
            "artifact": served.artifact.ref if served.artifact else None, "auth": keys.enabled,
            "engine": chosen_engine.info, "mode": profile.mode, "host": profile.to_dict(),
            "modifiers": {m.domain: str(m.artifact.ref if m.artifact else m.path) for m in loras},
            "router": router_artifact.ref if router_artifact else None,
            "escalation": escalation_artifact.ref if escalation_artifact else None,
            "teacher": runtime.teacher.name if runtime.teacher else None, "feedback_log": feedback_log,
            "router_threads": router_threads}
    app = build_app(runtime, Gate(keys, limit_values, workers=chosen_engine.parallel),
                    RequestLog(request_log, log_prompts), info)
    if chat_page:
        from cogumi.serve.chat_page import mount_chat_page

        loopback = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        app = mount_chat_page(app, f"http://{loopback}:{port}/v1", runtime.models(),
                              ctx.outputs_root / "chat" / "exports")
    app.state.runtime = runtime
    return app, served, info


def apply_router_threads(router_threads: int | None) -> int | None:
    """torch's thread count for this process (null = torch's default); the count now in force, or None."""
    if router_threads is None:
        return None
    if int(router_threads) < 1:
        raise ConfigError(f"stage.run.router_threads={router_threads}: expected >= 1 (or null = torch's default)")
    # torch's thread count is per process, and in the server only the router's and the detector's
    # encoder run on torch (generation runs on llama.cpp's own threads). Alone, 1 and 2 threads decide
    # alike (p95 3.6-5.1 ms, 2 cores); beside a decoding llama.cpp, 2 torch threads wait on busy cores:
    # decide p95 1 thread 4.6-8.3 ms vs 2 threads 15-237 ms (benchmarks/router_latency.py --beside-decode).
    import torch

    torch.set_num_threads(int(router_threads))
    return torch.get_num_threads()


def run(ctx: StageContext, model: str, host: str, port: int, keys_file: str | None, keys_env: str | None,
        limits: dict, request_log: str | None, log_prompts: bool, chat_page: bool, n_ctx: int | None,
        n_threads: int | None, engine: str, modifiers, router, escalation, mode: str | None, probe_tokens: int,
        max_resident_adapters: int, feedback_log: str | None, teacher: dict | None, llama_server: dict,
        upstream: dict, router_threads: int | None = None) -> Artifact:
    import uvicorn

    if not 0 < port < 65536:
        raise ConfigError(f"stage.run.port={port}: expected 1..65535")
    # Set here, not in build_server, so a test that builds a server in pytest's process keeps its threads.
    router_threads = apply_router_threads(router_threads)
    app, served, info = build_server(
        ctx, model, keys_file, keys_env, limits, request_log, log_prompts, host, port, chat_page, n_ctx=n_ctx,
        n_threads=n_threads, engine=engine, modifiers=modifiers, router=router, escalation=escalation, mode=mode,
        probe_tokens=probe_tokens, max_resident_adapters=max_resident_adapters, feedback_log=feedback_log,
        teacher=teacher, llama_server=llama_server, upstream=upstream, router_threads=router_threads)
    log.info("OpenAI API on http://%s:%d/v1 · chat page %s · request log %s", host, port,
             f"on http://{host}:{port}/chat/" if chat_page else "off", request_log)
    # uvicorn re-raises the stop signal after its graceful shutdown; turn it into an exception here so
    # the session record below is still written.
    signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
    except KeyboardInterrupt:
        pass
    finally:
        app.state.runtime.close()
    log.info("server stopped")

    # Stopped: record the session.
    with ctx.create_artifact({"model": served.artifact or served.path}) as out:
        out.metrics.update(app.state.metrics.summary())
        out.extra["served"] = {**info, "host": host, "port": port, "request_log": request_log}
        (out.dir / "session.json").write_text(json.dumps({**info, "metrics": out.metrics}, indent=2))
    return out.artifact
