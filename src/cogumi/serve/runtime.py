"""The serving runtime: one GGUF on llama.cpp that answers a chat and says who answered.

The router and the LoRA modifiers plug in here later: whatever decides the route returns the same
`RoutingRecord`, so the API, the CLI and the chat page never change. Today every answer is "base".
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from cogumi.errors import CogumiError

log = logging.getLogger(__name__)


class UnknownModelError(CogumiError):
    """A request named a model (or adapter) this runtime does not serve."""


class PromptTooLongError(CogumiError):
    """The prompt plus max_tokens does not fit the context window."""


class GenerationCancelled(CogumiError):
    """The caller went away (a closed stream); generation stopped early."""


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class RoutingRecord:
    """Which model/adapter answered, how sure the router was, and where the time went."""

    route: str = "base"  # the router's choice: base | <domain modifier> | escalate
    model: str = ""
    adapter: str | None = None
    confidence: float | None = None  # null until a calibrated router decides
    decided_by: str = "default"  # default | override | router
    timings: dict = field(default_factory=dict)  # queue_ms, ttft_ms, total_ms, decode_tokens_per_s

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int
    routing: RoutingRecord


class Runtime(Protocol):
    """What the API, the CLI and the chat page need from whatever answers: the seam the router and the
    modifiers plug into. `route()` decides (today: always the base model) and `chat()` answers with the
    decision attached as a `RoutingRecord`."""

    n_ctx: int

    def models(self) -> list[str]: ...

    def route(self, requested: str | None) -> RoutingRecord: ...

    def chat_prompt(self, messages: list[dict]) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def chat(self, messages: list[dict], params: GenerationParams, model: str | None = None,
             on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None,
             queued_at: float | None = None) -> Completion: ...

    def complete(self, prompt: str, params: GenerationParams, model: str | None = None,
                 on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None,
                 queued_at: float | None = None) -> Completion: ...


class LlamaRuntime:
    """The `Runtime` of one GGUF loaded once; requests are served one at a time (llama.cpp contexts are not thread-safe)."""

    def __init__(self, gguf_path: str | Path, name: str, n_ctx: int = 2048, n_threads: int | None = None,
                 seed: int = 1234):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.path = Path(gguf_path)
        self.name = name
        # Prompt and decode on the same thread count (llama.cpp defaults the batch threads to all cores).
        self.llm = Llama(str(self.path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, seed=seed,
                         verbose=False)
        self.n_ctx = n_ctx
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise CogumiError(f"{self.path} carries no tokenizer.chat_template; Cogumi never hard-codes one")
        token_text = self.llm._model.token_get_text
        self.eos = token_text(self.llm.token_eos())
        # The model's own chat template (stored in the GGUF), rendered as transformers would.
        self.formatter = Jinja2ChatFormatter(template, eos_token=self.eos,
                                             bos_token=token_text(self.llm.token_bos()))
        self._lock = threading.Lock()
        log.info("runtime: %s (%s, n_ctx=%d)", name, self.path, n_ctx)

    # ---- what can be asked for ---------------------------------------------------------------
    def models(self) -> list[str]:
        return [self.name]

    def route(self, requested: str | None) -> RoutingRecord:
        """The routing decision. Today: the base model, or an explicit override naming it."""
        if requested in (None, "", "auto", "base", self.name):
            by = "override" if requested not in (None, "", "auto") else "default"
            return RoutingRecord(route="base", model=self.name, decided_by=by)
        raise UnknownModelError(f"model '{requested}' is not served here; available: {', '.join(self.models())}")

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def chat_prompt(self, messages: list[dict]) -> str:
        return self.formatter(messages=messages).prompt

    # ---- answering ---------------------------------------------------------------------------
    def chat(self, messages: list[dict], params: GenerationParams, model: str | None = None,
             on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None,
             queued_at: float | None = None) -> Completion:
        routing = self.route(model)
        stop = tuple(params.stop) + (self.eos,)
        return self._generate(self.chat_prompt(messages), params, stop, routing, on_text, cancelled, queued_at)

    def complete(self, prompt: str, params: GenerationParams, model: str | None = None,
                 on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None,
                 queued_at: float | None = None) -> Completion:
        routing = self.route(model)
        return self._generate(prompt, params, tuple(params.stop), routing, on_text, cancelled, queued_at)

    def _generate(self, prompt, params, stop, routing, on_text, cancelled, queued_at) -> Completion:
        prompt_tokens = self.count_tokens(prompt)
        if prompt_tokens + params.max_tokens > self.n_ctx:
            raise PromptTooLongError(f"prompt has {prompt_tokens} tokens; with max_tokens={params.max_tokens} "
                                     f"it exceeds the context window of {self.n_ctx}")
        with self._lock:
            started = time.perf_counter()
            pieces, finish, first_at, count = [], "length", None, 0
            stream = self.llm.create_completion(
                prompt, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                stop=list(stop) or None, seed=params.seed, stream=True)
            for chunk in stream:
                if cancelled is not None and cancelled():
                    stream.close()
                    raise GenerationCancelled("client disconnected")
                choice = chunk["choices"][0]
                if choice["text"]:
                    first_at = first_at or time.perf_counter()
                    pieces.append(choice["text"])
                    if on_text is not None:
                        on_text(choice["text"])
                count += 1 if choice["finish_reason"] is None else 0
                if choice["finish_reason"] is not None:
                    finish = choice["finish_reason"]
            ended = time.perf_counter()
        text = "".join(pieces)
        completion_tokens = self.count_tokens(text) if text else 0
        decode_s = ended - (first_at or ended)
        routing.timings = {
            "queue_ms": round((started - queued_at) * 1000, 1) if queued_at else 0.0,
            "ttft_ms": round(((first_at or ended) - started) * 1000, 1),
            "total_ms": round((ended - started) * 1000, 1),
            # tokens after the first over the time after the first: the decode rate alone
            "decode_tokens_per_s": (round((completion_tokens - 1) / decode_s, 1)
                                    if decode_s > 0 and completion_tokens > 1 else None),
        }
        return Completion(text, finish, prompt_tokens, completion_tokens, routing)
