"""What the API, the CLI and the chat page talk to: a `Runtime` answers a chat and says who answered
(`RoutingRecord`); an `Engine` generates text for a rendered prompt, optionally through a LoRA modifier.

`cogumi.serve.routing.RoutedRuntime` is the runtime (router, modes, escalation); the engines are
in-process llama-cpp-python (`engine_local`), llama.cpp's own server (`engine_llama_server`) and any
OpenAI-compatible upstream (`engine_upstream`).
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from cogumi.errors import CogumiError


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

    route: str = "base"  # base | modifier | teacher
    model: str = ""  # the served name that answered (base name, cogumi/<domain>, teacher model)
    adapter: str | None = None  # the modifier's domain when route=modifier
    domain: str | None = None  # the router's domain for the question
    probabilities: dict | None = None  # domain -> probability
    confidence: float | None = None  # calibrated P(base answer correct), when it was measured
    threshold: float | None = None
    mode: str | None = None  # speed | balanced | quality
    decided_by: str = "default"  # default (no router) | router | mode | override | escalation
    reason: str | None = None
    escalated_from: str | None = None  # the route of the answer the user was dissatisfied with
    timings: dict = field(default_factory=dict)  # route_ms, swap_ms, queue_ms, ttft_ms, total_ms, ...

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int
    routing: RoutingRecord


@dataclass
class EngineReply:
    text: str
    finish_reason: str  # stop | length
    prompt_tokens: int
    completion_tokens: int
    timings: dict  # swap_ms, ttft_ms, total_ms, decode_tokens_per_s (what the engine measured)


class Engine(Protocol):
    """Generates for a rendered prompt, on the base (`adapter=None`) or through a loaded modifier."""

    name: str  # the base model's served name
    n_ctx: int
    parallel: int  # generations it runs at once (the gateway's worker slots)
    modifiers: tuple[str, ...]  # domains it can apply
    info: dict  # what /health shows about it

    def count_tokens(self, text: str) -> int: ...

    def chat_prompt(self, messages: list[dict]) -> str: ...

    def generate(self, prompt: str | list[dict], params: GenerationParams, adapter: str | None = None,
                 on_text: Callable[[str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> EngineReply:
        """A chat (list of messages) or a raw completion prompt (str)."""

    def probe(self, prompt: str | list[dict], max_tokens: int) -> list[float]:
        """Log-probabilities of the base model's greedy first `max_tokens` tokens."""

    def close(self) -> None: ...


class Runtime(Protocol):
    """What the API, the CLI and the chat page need from whatever answers. `check_model()` validates a
    requested model before any work; `chat()` answers with the decision attached as a `RoutingRecord`."""

    n_ctx: int

    def models(self) -> list[str]: ...

    def check_model(self, requested: str | None) -> None: ...

    def chat_prompt(self, messages: list[dict]) -> str: ...

    def count_tokens(self, text: str) -> int: ...

    def chat(self, messages: list[dict], params: GenerationParams, model: str | None = None,
             on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None,
             queued_at: float | None = None, mode: str | None = None) -> Completion: ...

    def complete(self, prompt: str, params: GenerationParams, model: str | None = None,
                 on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None,
                 queued_at: float | None = None, mode: str | None = None) -> Completion: ...


def decode_rate(completion_tokens: int, first_at: float | None, ended: float) -> float | None:
    """Tokens after the first over the time after the first: the decode rate alone."""
    decode_s = ended - (first_at or ended)
    return round((completion_tokens - 1) / decode_s, 1) if decode_s > 0 and completion_tokens > 1 else None
