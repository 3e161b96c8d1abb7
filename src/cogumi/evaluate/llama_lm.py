"""A GGUF model as an lm-eval model (`cogumi-gguf`), scored from llama.cpp's own logits.

lm-eval's `gguf` model asks a server for `echo=True` prompt logprobs, which llama-cpp-python gets
wrong (TOOLCHAIN.md: MC accuracy 0.1 where HF gives 0.8). Here the loglikelihood of a continuation
is read straight from `Llama.scores` after `Llama.eval` on the token ids, with the same
context/continuation split as lm-eval's `hf` model, so both back ends score identical tokens.
"""

import logging

import lm_eval.models  # noqa: F401  (fills lm-eval's lazy registry first: a non-empty one hides `hf`)
import numpy as np
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def _log_softmax(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    shifted = rows - rows.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@register_model("cogumi-gguf")
class LlamaCppLM(LM):
    def __init__(self, model_path: str, n_ctx: int = 2048, n_threads: int | None = None, n_batch: int = 512,
                 seed: int = 1234, **_ignored):
        super().__init__()
        from llama_cpp import Llama

        # logits_all: Llama.scores then holds a row per evaluated position, which scoring needs.
        self.llm = Llama(model_path=str(model_path), n_ctx=int(n_ctx), n_threads=n_threads, n_batch=int(n_batch),
                         logits_all=True, seed=int(seed), verbose=False)
        self.model_path = str(model_path)
        self.max_length = int(n_ctx)
        bos, eos = self.llm.token_bos(), self.llm.token_eos()
        self.prefix_token = bos if bos >= 0 else eos

    # ---- tokens --------------------------------------------------------------------------------
    def tok_encode(self, text: str) -> list[int]:
        # No BOS, as lm-eval's hf model encodes for Llama-family tokenizers without add_bos_token.
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: trailing spaces of the context move to the continuation."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:  # as lm-eval's hf model: condition on the BOS (or EOS) token alone
            return [self.prefix_token], self.tok_encode(continuation)
        whole = self.tok_encode(context + continuation)
        context_ids = self.tok_encode(context)
        return context_ids, whole[len(context_ids):]

    # ---- scoring -------------------------------------------------------------------------------
    def _evaluate(self, tokens: list[int]) -> None:
        """Evaluate `tokens`, reusing the cached prefix (MC options share their context)."""
        cached = self.llm.n_tokens
        same = 0
        previous = self.llm.input_ids[:cached]
        while same < min(cached, len(tokens)) and previous[same] == tokens[same]:
            same += 1
        self.llm.n_tokens = min(same, len(tokens) - 1)  # eval() drops the KV cache from here on
        self.llm.eval(tokens[self.llm.n_tokens:])

    def continuation_logprobs(self, context_ids: list[int], continuation_ids: list[int]) -> tuple[float, bool]:
        tokens = (context_ids + continuation_ids)[-self.max_length:]
        n_cont = len(continuation_ids)
        self._evaluate(tokens)
        rows = _log_softmax(np.array(self.llm.scores[len(tokens) - n_cont - 1:len(tokens) - 1]))
        targets = np.array(tokens[-n_cont:])
        logprob = float(rows[np.arange(n_cont), targets].sum())
        greedy = bool((rows.argmax(axis=-1) == targets).all())
        return logprob, greedy

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        results = []
        for request in tqdm(requests, desc="gguf loglikelihood", disable=disable_tqdm):
            context, continuation = request.args
            result = self.continuation_logprobs(*self.encode_pair(context, continuation))
            results.append(result)
            self.cache_hook.add_partial("loglikelihood", (context, continuation), result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        """Sum of token logprobs of whole texts, in windows of the context length."""
        results = []
        for request in tqdm(requests, desc="gguf rolling", disable=disable_tqdm):
            ids = [self.prefix_token] + self.tok_encode(request.args[0])
            total, window = 0.0, self.max_length
            for start in range(1, len(ids), window - 1):
                context = ids[max(0, start - 1):start]
                total += self.continuation_logprobs(context, ids[start:start + window - 1])[0]
            results.append(total)
        return results

    # ---- generation ----------------------------------------------------------------------------
    def generate_until(self, requests, disable_tqdm: bool = False):
        results = []
        for request in tqdm(requests, desc="gguf generate", disable=disable_tqdm):
            context, kwargs = request.args
            text = self.generate(context, dict(kwargs))
            results.append(text)
            self.cache_hook.add_partial("generate_until", (context, kwargs), text)
        return results

    def generate(self, prompt: str, kwargs: dict) -> str:
        until = kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        sample = kwargs.get("do_sample", False)
        out = self.llm.create_completion(
            prompt, max_tokens=int(kwargs.get("max_gen_toks", 256)), stop=until or None,
            temperature=float(kwargs.get("temperature", 0.8)) if sample else 0.0,
            top_p=float(kwargs.get("top_p", 0.95)), seed=kwargs.get("seed"))
        return out["choices"][0]["text"]

    # ---- chat templates (the GGUF carries the model's template) ---------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.model_path

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.llm.metadata.get("tokenizer.chat_template", "")

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(template=self.chat_template(), eos_token=self.llm.detokenize(
            [self.llm.token_eos()]).decode(), bos_token=self.llm.detokenize([self.llm.token_bos()]).decode(),
            add_generation_prompt=add_generation_prompt)
        return formatter(messages=chat_history).prompt
