"""OpenAI-shaped request bodies (strictly typed, so a bad type is a 400 naming the field) and replies."""

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cogumi.serve.runtime import Completion


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def as_dict(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": self.role, "content": text}


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    include_usage: bool = False


class CogumiOptions(BaseModel):
    """Cogumi's own request field: `{"cogumi": {"mode": "speed", "modifier": "code"}}`."""

    model_config = ConfigDict(strict=True, extra="forbid")
    mode: Literal["speed", "balanced", "quality"] | None = None
    modifier: str | None = None  # a served modifier's domain, or "base": the same as model=cogumi/<domain>


class Sampling(BaseModel):
    # Unknown OpenAI fields (logit_bias, user, ...) are ignored; known ones are type-checked strictly.
    model_config = ConfigDict(strict=True, extra="ignore")
    model: str | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = Field(None, max_length=4)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)  # one choice per request: the runtime serves one stream at a time
    cogumi: CogumiOptions | None = None

    def requested_model(self) -> str | None:
        """The model the request forces: the `cogumi.modifier` override wins over `model`."""
        if self.cogumi and self.cogumi.modifier:
            return "base" if self.cogumi.modifier == "base" else f"cogumi/{self.cogumi.modifier}"
        return self.model

    def requested_mode(self) -> str | None:
        return self.cogumi.mode if self.cogumi else None

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(s for s in self.stop if s)

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: str | list[str]

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else "".join(self.prompt)


def first_error(err: ValidationError) -> tuple[str, str]:
    """(field path, message) of the first validation error, e.g. ('messages.0.content', ...)."""
    detail = err.errors()[0]
    # Union members show up in the path as type tags ('str', 'list[TextPart]'): not part of the field name.
    param = ".".join(str(p) for p in detail["loc"] if p not in ("str", "int", "float") and "[" not in str(p))
    return param or "body", detail["msg"]


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(done: Completion) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def chat_response(rid: str, model: str, done: Completion) -> dict:
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                         "finish_reason": done.finish_reason, "logprobs": None}],
            "usage": usage(done), "cogumi": done.routing.as_dict()}


def completion_response(rid: str, model: str, done: Completion) -> dict:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": done.text, "finish_reason": done.finish_reason, "logprobs": None}],
            "usage": usage(done), "cogumi": done.routing.as_dict()}


def chat_chunk(rid: str, model: str, delta: dict, finish: str | None = None, **extra) -> dict:
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}


def completion_chunk(rid: str, model: str, text: str, finish: str | None = None, **extra) -> dict:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}], **extra}
