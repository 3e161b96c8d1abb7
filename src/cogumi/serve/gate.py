"""What a request passes before it reaches the model: key, rate, size, body, caps, queue.

Each check fails with an OpenAI-shaped JSON error: 401 (key), 429 (rate, with Retry-After),
413 (body or prompt too big), 400 (bad JSON or field, naming it), 404 (unknown model),
503 (queue full, with Retry-After) rather than letting waiting requests grow without bound.
"""

import asyncio
import json
from dataclasses import dataclass

from pydantic import ValidationError

from cogumi.serve.auth import KeyRing, RateLimiter, retry_after_header
from cogumi.serve.schemas import error_body, first_error


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 65536
    max_tokens_cap: int = 512
    default_max_tokens: int = 256
    default_temperature: float = 0.7
    default_top_p: float = 0.95
    queue_size: int = 64  # requests allowed to wait while the workers run; more -> 503
    rate_per_minute: float = 600  # per key; 0 = unlimited
    rate_burst: int = 60


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str, param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}
        self.body = error_body(message, kind, param, code)


class Gate:
    def __init__(self, keys: KeyRing, limits: Limits, workers: int = 1):
        self.keys, self.limits = keys, limits
        self.rate = RateLimiter(limits.rate_per_minute, limits.rate_burst)
        self.pending = 0  # queued + running generations
        # Generations running at once: 1 in-process (one llama.cpp context), the slots of llama-server.
        self.workers = workers
        self.worker = asyncio.Semaphore(workers)

    def authenticate(self, authorization: str | None) -> str:
        """The key's name (or 'anonymous' when auth is off)."""
        if not self.keys.enabled:
            return "anonymous"
        token = None
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        if not token:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "authentication_error",
                           code="missing_api_key")
        name = self.keys.identify(token)
        if name is None:
            raise ApiError(401, "invalid API key", "authentication_error", code="invalid_api_key")
        return name

    def check_rate(self, key_name: str) -> None:
        wait = self.rate.check(key_name)
        if wait > 0:
            raise ApiError(429, f"rate limit of {self.limits.rate_per_minute:g} requests/min for this key "
                           f"exceeded; retry in {wait:.1f} s", "rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": retry_after_header(wait)})

    async def read_body(self, request, schema):
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.limits.max_request_bytes:
            raise self._too_large(int(declared))
        raw = await request.body()
        if len(raw) > self.limits.max_request_bytes:
            raise self._too_large(len(raw))
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ApiError(400, f"request body is not valid JSON: {err}", "invalid_request_error", code="bad_json")
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object", "invalid_request_error", param="body")
        try:
            body = schema.model_validate(data)
        except ValidationError as err:
            param, message = first_error(err)
            raise ApiError(400, f"'{param}': {message}", "invalid_request_error", param=param,
                           code="invalid_value")
        requested = body.requested_max_tokens()
        if requested is not None and requested > self.limits.max_tokens_cap:
            field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
            raise ApiError(400, f"'{field}'={requested} exceeds this server's cap of {self.limits.max_tokens_cap}",
                           "invalid_request_error", param=field, code="max_tokens_too_large")
        return body

    def _too_large(self, size: int) -> ApiError:
        return ApiError(413, f"request body of {size} bytes exceeds the limit of {self.limits.max_request_bytes}",
                        "invalid_request_error", code="request_too_large")

    def admit(self) -> None:
        """Count a request into the queue, or refuse it when the queue is full."""
        if self.pending >= self.limits.queue_size + self.workers:
            raise ApiError(503, f"server busy: {self.pending} requests queued (limit {self.limits.queue_size})",
                           "server_busy", code="queue_full", headers={"Retry-After": "1"})
        self.pending += 1

    def release(self) -> None:
        self.pending -= 1
