"""The OpenAI-compatible FastAPI app around a runtime: /v1/models, /v1/chat/completions,
/v1/completions (stream=true as server-sent events), /health and /metrics (the chat page is mounted
by `cogumi.serve.chat_page`)."""

import asyncio
import json
import logging
import threading
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from cogumi.serve import schemas
from cogumi.serve.gate import ApiError, Gate, Limits
from cogumi.serve.monitoring import Metrics, RequestLog
from cogumi.serve.runtime import (GenerationCancelled, GenerationParams, PromptTooLongError, Runtime,
                                  UnknownModelError)

log = logging.getLogger(__name__)
_DONE = object()


def _sse(payload) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


def build_app(runtime: Runtime, gate: Gate, request_log: RequestLog, info: dict | None = None) -> FastAPI:
    """`info` (model path, sha256, ...) is shown by /health."""
    app = FastAPI(title="Cogumi", docs_url=None, redoc_url=None)
    metrics = Metrics()
    app.state.metrics, app.state.gate, app.state.runtime = metrics, gate, runtime
    limits: Limits = gate.limits

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return JSONResponse(err.body, status_code=err.status, headers=err.headers)

    class Observe:
        """Measures non-streaming /v1 requests (streams record themselves when they finish). A plain ASGI
        wrapper: Starlette's BaseHTTPMiddleware would pipe every streamed chunk through an extra task."""

        def __init__(self, app):
            self.inner = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
                return await self.inner(scope, receive, send)
            started, status = time.perf_counter(), [500]

            async def capture(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await self.inner(scope, receive, capture)
            finally:
                state = scope.get("state", {})
                if not state.get("streaming"):
                    record = state.get("record")
                    metrics.observe(scope["path"], status[0], time.perf_counter() - started, record)
                    request_log.write({"endpoint": scope["path"], "status": status[0], "key": state.get("key"),
                                       "latency_ms": round((time.perf_counter() - started) * 1000, 1),
                                       **(record or {})}, state.get("prompt"), state.get("reply"))

    app.add_middleware(Observe)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": runtime.models(), "queued": gate.pending, **(info or {})}

    @app.get("/metrics")
    async def prometheus():
        metrics.in_flight = gate.pending
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request):
        request.state.key = gate.authenticate(request.headers.get("authorization"))
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "cogumi"}
                                           for m in runtime.models()]}

    async def handle(request: Request, kind: str):
        request.state.key = key = gate.authenticate(request.headers.get("authorization"))
        gate.check_rate(key)
        body = await gate.read_body(request, schemas.ChatRequest if kind == "chat" else schemas.CompletionRequest)
        requested, mode = body.requested_model(), body.requested_mode()
        try:
            runtime.check_model(requested)
        except UnknownModelError as err:
            raise ApiError(404, str(err), "invalid_request_error", param="model", code="model_not_found")
        params = GenerationParams(
            max_tokens=body.requested_max_tokens() or limits.default_max_tokens,
            temperature=limits.default_temperature if body.temperature is None else body.temperature,
            top_p=limits.default_top_p if body.top_p is None else body.top_p,
            stop=body.stops(), seed=body.seed)
        if kind == "chat":
            messages = [m.as_dict() for m in body.messages]
            prompt_text, prompt_for_log = runtime.chat_prompt(messages), messages
            call = lambda **kw: runtime.chat(messages, params, model=requested, mode=mode, **kw)  # noqa: E731
        else:
            prompt_text = prompt_for_log = body.prompt_text()
            call = lambda **kw: runtime.complete(prompt_text, params, model=requested, mode=mode, **kw)  # noqa: E731
        prompt_tokens = runtime.count_tokens(prompt_text)
        if prompt_tokens + params.max_tokens > runtime.n_ctx:
            raise ApiError(413, f"prompt of {prompt_tokens} tokens + max_tokens={params.max_tokens} exceeds the "
                           f"context window of {runtime.n_ctx} tokens", "invalid_request_error",
                           param="messages" if kind == "chat" else "prompt", code="context_length_exceeded")
        request.state.prompt = prompt_for_log
        gate.admit()
        queued_at = time.perf_counter()
        model_name = requested if requested in runtime.models() else runtime.models()[0]
        if body.stream:
            request.state.streaming = True
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _stream(request, kind, call, model_name, include_usage, queued_at, key, prompt_for_log)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            async with gate.worker:
                done = await asyncio.get_running_loop().run_in_executor(None, lambda: call(queued_at=queued_at))
        except PromptTooLongError as err:
            raise ApiError(413, str(err), "invalid_request_error", code="context_length_exceeded")
        finally:
            gate.release()
        request.state.record = _record(done)
        request.state.reply = done.text
        rid = schemas.new_id("chatcmpl" if kind == "chat" else "cmpl")
        build = schemas.chat_response if kind == "chat" else schemas.completion_response
        return build(rid, done.routing.model or model_name, done)

    async def _stream(request, kind, call, model_name, include_usage, queued_at, key, prompt_for_log):
        loop, queue, cancelled = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()
        rid = schemas.new_id("chatcmpl" if kind == "chat" else "cmpl")
        started, status, done, future = time.perf_counter(), 200, None, None

        def chunk(text=None, finish=None, **extra):
            if kind == "chat":
                delta = {} if text is None else {"content": text}
                return schemas.chat_chunk(rid, model_name, delta, finish, **extra)
            return schemas.completion_chunk(rid, model_name, text or "", finish, **extra)

        try:
            if kind == "chat":
                yield _sse(schemas.chat_chunk(rid, model_name, {"role": "assistant", "content": ""}))
            async with gate.worker:
                future = loop.run_in_executor(None, lambda: call(
                    on_text=lambda t: loop.call_soon_threadsafe(queue.put_nowait, t),
                    cancelled=cancelled.is_set, queued_at=queued_at))
                # (f.exception() marks a cancelled generation's error as seen: no "never retrieved" noise)
                future.add_done_callback(lambda f: (queue.put_nowait(_DONE), f.cancelled() or f.exception()))
                finished = False
                while not finished:
                    # Pieces that arrived while the last one was being sent go out as one event: when the
                    # client or the loop lags, per-event overhead must not slow the model down.
                    pieces = [await queue.get()]
                    while not queue.empty():
                        pieces.append(queue.get_nowait())
                    if pieces[-1] is _DONE:
                        finished, pieces = True, pieces[:-1]
                    if pieces:
                        yield _sse(chunk("".join(pieces)))
                try:
                    done = future.result()
                except (PromptTooLongError, GenerationCancelled) as err:
                    status = 413 if isinstance(err, PromptTooLongError) else 499
                    yield _sse(schemas.error_body(str(err), "invalid_request_error"))
                    return
                yield _sse(chunk(None, done.finish_reason, cogumi=done.routing.as_dict()))
                if include_usage:
                    yield _sse({**chunk(None), "choices": [], "usage": schemas.usage(done)})
                yield _sse("[DONE]")
        except asyncio.CancelledError:
            status = 499  # the client closed the stream
            raise
        finally:
            # No await here: a cancelled stream is re-cancelled at every await. The worker thread sees
            # the flag at its next token and stops; the runtime's own lock keeps generations serial.
            cancelled.set()
            gate.release()
            record = _record(done) if done else None
            metrics.observe(request.url.path, status, time.perf_counter() - started, record)
            request_log.write({"endpoint": request.url.path, "status": status, "key": key, "stream": True,
                               "latency_ms": round((time.perf_counter() - started) * 1000, 1), **(record or {})},
                              prompt_for_log, done.text if done else None)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, "completion")

    return app


def _record(done) -> dict:
    r = done.routing
    return {"route": r.route, "model": r.model, "adapter": r.adapter, "domain": r.domain,
            "confidence": r.confidence, "mode": r.mode, "decided_by": r.decided_by,
            "escalated_from": r.escalated_from, "prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "finish_reason": done.finish_reason, **r.timings}
