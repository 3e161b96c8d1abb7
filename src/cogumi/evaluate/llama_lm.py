"""A GGUF model as an lm-eval model (`cogumi-gguf`), scored from llama.cpp's own logits.

lm-eval's `gguf` model asks a server for `echo=True` prompt logprobs, which llama-cpp-python gets
wrong (TOOLCHAIN.md: MC accuracy 0.1 where HF gives 0.8). Here the loglikelihood of a continuation
is read from llama.cpp's logits (llama_scoring.py: the context once, all options of an item in one
batch), with the same context/continuation split as lm-eval's `hf` model, so both back ends score
identical tokens. Generation goes through `create_completion` on the same weights. A GGUF LoRA
adapter (`lora_path`) is applied to both.
"""

import logging
import os
import queue
from concurrent.futures import ThreadPoolExecutor

import lm_eval.models  # noqa: F401  (fills lm-eval's lazy registry first: a non-empty one hides `hf`)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from cogumi.evaluate.llama_scoring import MultiSequenceScorer

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Every core, unless other processes already want more than the machine has: then one.

    llama.cpp's worker threads spin at their barriers: on a machine whose cores are taken, two
    threads measured ~10x slower than one (127-token prompt: 10 vs 118 tok/s at load 15 on 2 cores).
    The threshold sits above `cores` because the previous pipeline step alone leaves a load of ~cores.
    COGUMI_LLAMA_THREADS pins the count: the load average also counts processes at nice 19, which
    yield their cores, so a run that has the CPU to itself can say so.
    """
    if os.environ.get("COGUMI_LLAMA_THREADS"):
        return int(os.environ["COGUMI_LLAMA_THREADS"])
    cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] >= 1.5 * cores
    if busy:
        log.info("load average %.1f on %d cores: llama.cpp runs on 1 thread", os.getloadavg()[0], cores)
    return 1 if busy else cores


@register_model("cogumi-gguf")
class LlamaCppLM(LM):
    def __init__(self, model_path: str, n_ctx: int = 2048, n_threads: int | None = None, n_batch: int = 512,
                 seed: int = 1234, lora_path: str | None = None, scoring_contexts: int | None = None, **_ignored):
        super().__init__()
        from llama_cpp import Llama

        # No logits_all: scoring has its own context (llama_scoring.py), generation needs the last row only.
        n_threads = int(n_threads) if n_threads else default_threads()
        self.llm = Llama(model_path=str(model_path), n_ctx=int(n_ctx), n_threads=n_threads,
                         n_threads_batch=n_threads, n_batch=int(n_batch), seed=int(seed), lora_path=lora_path or None,
                         verbose=False)
        self.model_path, self.lora_path = str(model_path), lora_path
        self.max_length = int(n_ctx)
        self.n_batch, self.n_threads = int(n_batch), n_threads
        # Loglikelihoods run on `scoring_contexts` llama.cpp contexts of n_threads / k threads each, side by
        # side (default: one per thread). On this 2-core VM two 1-thread contexts scored 1.20x faster than
        # one 2-thread context (same process, alternating, 3 rounds of 100 items: MMLU 1.25, HellaSwag 1.22,
        # ARC-E 1.05) and steadier: a core that stalls for a moment holds up only its own context, not every
        # barrier of a shared decode, and one context's Python work overlaps the other's decode.
        self.scoring_contexts = max(1, min(int(scoring_contexts or n_threads), n_threads))
        self._scorers: list[MultiSequenceScorer] | None = None
        bos, eos = self.llm.token_bos(), self.llm.token_eos()
        self.prefix_token = bos if bos >= 0 else eos

    @property
    def scorers(self) -> list[MultiSequenceScorer]:
        if self._scorers is None:  # only tasks that score options pay for the extra contexts
            self._scorers = [MultiSequenceScorer(self.llm, n_ctx=2 * self.max_length, n_batch=self.n_batch,
                                                 n_threads=max(1, self.n_threads // self.scoring_contexts))
                             for _ in range(self.scoring_contexts)]
        return self._scorers

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
    def continuation_logprobs(self, context_ids: list[int], continuation_ids: list[int]) -> tuple[float, bool]:
        return self.scorers[0].score(context_ids, [continuation_ids])[0]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        """Requests that share a context (the options of one item) are scored together, neighbouring
        items share llama.cpp batches (llama_scoring.score_many), and chunks of items are spread over
        the scoring contexts."""
        by_context: dict[tuple, list[int]] = {}
        continuation_of: list[list[int]] = []
        for i, request in enumerate(requests):
            context_ids, continuation_ids = self.encode_pair(*request.args)
            by_context.setdefault(tuple(context_ids), []).append(i)
            continuation_of.append(continuation_ids)
        # Sorted contexts put items that share a prompt prefix (an MMLU subject line, a HellaSwag
        # activity) next to each other: sequence 0 keeps that prefix in the KV cache.
        items = sorted(by_context.items())
        # Small chunks keep the contexts evenly busy to the end and the bar moving; a wave cut short per
        # chunk costs little.
        chunks = [items[start:start + 16] for start in range(0, len(items), 16)]
        idle: queue.SimpleQueue = queue.SimpleQueue()
        for scorer in self.scorers:
            idle.put(scorer)

        def score(chunk):
            scorer = idle.get()  # as many workers as scorers: one is always free
            try:
                return scorer.score_many([(list(ids), [continuation_of[i] for i in members]) for ids, members in chunk])
            finally:
                idle.put(scorer)

        results: list = [None] * len(requests)
        with tqdm(total=len(requests), desc="gguf loglikelihood", disable=disable_tqdm) as bar, \
                ThreadPoolExecutor(len(self.scorers)) as pool:
            for chunk, scored in zip(chunks, pool.map(score, chunks)):
                for (_, members), item_scores in zip(chunk, scored):
                    for i, result in zip(members, item_scores):
                        results[i] = result
                        self.cache_hook.add_partial("loglikelihood", requests[i].args, result)
                    bar.update(len(members))
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
