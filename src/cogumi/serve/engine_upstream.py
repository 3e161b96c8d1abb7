"""An engine behind an OpenAI-compatible URL: vLLM (`--enable-lora`: each modifier is a model name),
`llama_cpp.server`, or llama.cpp's own server (one model; modifiers by per-request `lora` scales).

Cogumi's gateway keeps auth, limits, routing, metrics and the chat page; the upstream only generates.
With the served model's template at hand (`ChatTemplate`), chats are rendered here and sent as raw
completions (the same prompt every engine sees); without it they go to the upstream's chat endpoint.
"""

import logging
import time
from collections.abc import Callable

from cogumi.errors import CogumiError
from cogumi.serve.runtime import EngineReply, GenerationCancelled, GenerationParams, UnknownModelError, decode_rate

log = logging.getLogger(__name__)


class UpstreamError(CogumiError):
    """The upstream server failed or answered something that is not an OpenAI reply."""


class UpstreamEngine:
    def __init__(self, base_url: str, model: str, name: str | None = None, api_key: str | None = None,
                 modifier_models: dict[str, str] | None = None, lora_ids: dict[str, int] | None = None,
                 template=None, n_ctx: int = 4096, parallel: int = 4, timeout: float = 600):
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", max_retries=0, timeout=timeout)
        self.base_url, self.model, self.name = base_url, model, name or model
        # vLLM style: a modifier is its own model name; llama-server style: an adapter id with a scale.
        self.modifier_models = dict(modifier_models or {})
        self.lora_ids = dict(lora_ids or {})
        self.modifiers = tuple(self.lora_ids or self.modifier_models)
        self.template, self.n_ctx, self.parallel = template, n_ctx, parallel
        self.info = {"engine": "openai-upstream", "upstream": base_url, "upstream_model": model,
                     "parallel": parallel}

    def count_tokens(self, text: str) -> int:
        # Without the model's tokenizer the upstream enforces its own context (its 400 comes back).
        return self.template.count(text) if self.template else 0

    def chat_prompt(self, messages: list[dict]) -> str:
        if self.template:
            return self.template.render(messages)
        return "\n".join(m["content"] for m in messages)

    def _target(self, adapter: str | None) -> tuple[str, dict]:
        """(model name, extra request fields) that select `adapter` upstream."""
        if adapter is not None and adapter not in self.modifiers:
            raise UnknownModelError(f"modifier '{adapter}' is not served upstream; served: {', '.join(self.modifiers)}")
        if self.lora_ids:
            # Adapters not named default to 0 only per request; name them all so base really is base.
            return self.model, {"lora": [{"id": i, "scale": 1.0 if d == adapter else 0.0}
                                         for d, i in self.lora_ids.items()]}
        return (self.modifier_models[adapter] if adapter else self.model), {}

    def _request(self, prompt, params: GenerationParams, adapter: str | None, stream: bool, **extra):
        model, extra_body = self._target(adapter)
        common = dict(model=model, max_tokens=params.max_tokens, temperature=params.temperature,
                      top_p=params.top_p, stop=list(params.stop) or None, seed=params.seed, stream=stream,
                      extra_body=extra_body or None, **extra)
        if isinstance(prompt, list) and self.template:
            prompt = self.template.render(prompt)
        if isinstance(prompt, list):
            return "chat", self.client.chat.completions.create(messages=prompt, **common)
        return "completion", self.client.completions.create(prompt=prompt, **common)

    def generate(self, prompt: str | list[dict], params: GenerationParams, adapter: str | None = None,
                 on_text: Callable[[str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> EngineReply:
        import openai

        started = time.perf_counter()
        pieces, finish, first_at, usage, chunks = [], "length", None, None, 0
        try:
            kind, stream = self._request(prompt, params, adapter, True, stream_options={"include_usage": True})
            with stream:
                for chunk in stream:
                    if cancelled is not None and cancelled():
                        raise GenerationCancelled("client disconnected")
                    usage = chunk.usage or usage
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    text = choice.delta.content if kind == "chat" else choice.text
                    if text:
                        chunks += 1
                        first_at = first_at or time.perf_counter()
                        pieces.append(text)
                        if on_text is not None:
                            on_text(text)
                    finish = choice.finish_reason or finish
        except openai.APIError as err:
            raise UpstreamError(f"upstream {self.base_url} failed: {err}") from err
        ended = time.perf_counter()
        text = "".join(pieces)
        completion = usage.completion_tokens if usage else (self.count_tokens(text) or chunks)
        prompt_tokens = usage.prompt_tokens if usage else self.count_tokens(self.chat_prompt(prompt)
                                                                            if isinstance(prompt, list) else prompt)
        return EngineReply(text, "stop" if finish == "stop" else "length", prompt_tokens, completion, {
            "swap_ms": 0.0, "ttft_ms": round(((first_at or ended) - started) * 1000, 1),
            "total_ms": round((ended - started) * 1000, 1),
            "decode_tokens_per_s": decode_rate(completion, first_at, ended)})

    def probe(self, prompt: str | list[dict], max_tokens: int) -> list[float]:
        """The base's greedy first tokens' log-probabilities ([] when the upstream gives none)."""
        params = GenerationParams(max_tokens=max_tokens, temperature=0.0, top_p=1.0)
        kind, reply = self._request(prompt, params, None, False, logprobs=True if isinstance(prompt, list)
                                    and not self.template else 1)
        logprobs = reply.choices[0].logprobs
        if logprobs is None:
            return []
        if getattr(logprobs, "token_logprobs", None) is not None:  # completions shape
            return [float(v) for v in logprobs.token_logprobs if v is not None]
        content = getattr(logprobs, "content", None) or (logprobs.model_extra or {}).get("content") or []
        return [float(c["logprob"] if isinstance(c, dict) else c.logprob) for c in content]

    def close(self) -> None:
        self.client.close()
