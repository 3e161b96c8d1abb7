"""The in-process engine: one GGUF on llama-cpp-python, its LoRA modifiers hot-swapped per request.

A llama.cpp context is not thread-safe, so generations run one at a time (`parallel = 1`); the
embedded default serves one user. `ChatTemplate` (the GGUF's own template and tokenizer, vocabulary
only) is shared with the engines that generate elsewhere.
"""

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cogumi.errors import CogumiError
from cogumi.serve.lora_slots import LoraSlots
from cogumi.serve.runtime import EngineReply, GenerationCancelled, GenerationParams, UnknownModelError, decode_rate

log = logging.getLogger(__name__)


class ChatTemplate:
    """Render chats with the model's own template and count tokens, from a loaded `Llama`."""

    def __init__(self, llm, source: Path):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise CogumiError(f"{source} carries no tokenizer.chat_template; Cogumi never hard-codes one")
        token_text = llm._model.token_get_text
        self.llm = llm
        self.eos = token_text(llm.token_eos())
        self.formatter = Jinja2ChatFormatter(template, eos_token=self.eos, bos_token=token_text(llm.token_bos()))

    @classmethod
    def from_gguf(cls, path: Path) -> "ChatTemplate":
        """Vocabulary only: no weights are loaded (for engines that generate in another process)."""
        from llama_cpp import Llama

        return cls(Llama(str(path), vocab_only=True, verbose=False), path)

    def render(self, messages: list[dict]) -> str:
        return self.formatter(messages=messages).prompt

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))


class LlamaEngine:
    parallel = 1

    def __init__(self, gguf_path: str | Path, name: str, n_ctx: int = 2048, n_threads: int | None = None,
                 seed: int = 1234, modifiers: dict[str, Path] | None = None, max_resident_adapters: int = 8):
        from llama_cpp import Llama

        self.path = Path(gguf_path)
        self.name = name
        # Prompt and decode on the same thread count (llama.cpp defaults the batch threads to all cores).
        self.llm = Llama(str(self.path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, seed=seed,
                         verbose=False)
        self.n_ctx = n_ctx
        self.template = ChatTemplate(self.llm, self.path)
        self.slots = LoraSlots(self.llm.model, self.llm.ctx, modifiers or {}, max_resident_adapters)
        self.modifiers = tuple(self.slots.files)
        self._lock = threading.Lock()
        self.info = {"engine": "in-process", "parallel": 1, "n_threads": n_threads,
                     "resident_adapters_max": max_resident_adapters}
        log.info("in-process engine: %s (%s, n_ctx=%d, %d modifiers)", name, self.path, n_ctx, len(self.modifiers))

    def count_tokens(self, text: str) -> int:
        return self.template.count(text)

    def chat_prompt(self, messages: list[dict]) -> str:
        return self.template.render(messages)

    def _use(self, adapter: str | None) -> float:
        """Switch the context's adapter (caller holds the lock); the milliseconds it took."""
        if adapter is not None and adapter not in self.slots.files:
            raise UnknownModelError(f"modifier '{adapter}' is not loaded; loaded: {', '.join(self.modifiers)}")
        changed, swap_ms = self.slots.apply(adapter)
        if changed:
            # The KV cache was computed through the previous adapter: a prefix match must not reuse it.
            self.llm.reset()
        return swap_ms

    def generate(self, prompt: str | list[dict], params: GenerationParams, adapter: str | None = None,
                 on_text: Callable[[str], None] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> EngineReply:
        """A chat (messages) is rendered with the model's template; a string is a raw completion."""
        if isinstance(prompt, list):
            prompt = self.chat_prompt(prompt)
        stop = list(params.stop) + [self.template.eos]
        with self._lock:
            started = time.perf_counter()
            swap_ms = self._use(adapter)
            pieces, finish, first_at = [], "length", None
            stream = self.llm.create_completion(
                prompt, max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
                stop=stop, seed=params.seed, stream=True)
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
                if choice["finish_reason"] is not None:
                    finish = choice["finish_reason"]
            ended = time.perf_counter()
        text = "".join(pieces)
        completion_tokens = self.count_tokens(text) if text else 0
        return EngineReply(text, finish, self.count_tokens(prompt), completion_tokens, {
            "swap_ms": round(swap_ms, 2), "ttft_ms": round(((first_at or ended) - started) * 1000, 1),
            "total_ms": round((ended - started) * 1000, 1),
            "decode_tokens_per_s": decode_rate(completion_tokens, first_at, ended)})

    def probe(self, prompt: str | list[dict], max_tokens: int) -> list[float]:
        """Log-probabilities of the base model's greedy first tokens, read from the logits step by step
        (llama-cpp-python's own `logprobs` needs `logits_all=True`, which slows every request). The
        prompt stays in the KV cache, so a base answer that follows reuses it."""
        import llama_cpp
        import numpy as np

        if isinstance(prompt, list):
            prompt = self.chat_prompt(prompt)
        chosen: list[float] = []
        with self._lock:
            self._use(None)
            self.llm.reset()
            self.llm.eval(self.llm.tokenize(prompt.encode(), add_bos=False, special=True))
            for _ in range(max_tokens):
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1),
                                               shape=(self.llm.n_vocab(),)).astype(np.float64)
                token = int(np.argmax(logits))
                chosen.append(float(logits[token] - logits.max() - np.log(np.exp(logits - logits.max()).sum())))
                if token == self.llm.token_eos():
                    break
                self.llm.eval([token])
        return chosen

    def close(self) -> None:
        with self._lock:
            self.slots.close()
            self.llm.close()
