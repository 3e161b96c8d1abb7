"""Continuation loglikelihoods from llama.cpp, scoring all options of one item in one pass.

Why not `Llama.eval` + `Llama.scores`: with `logits_all=True` llama.cpp computes the output layer for
every context position (49k-wide for SmolLM2) and llama-cpp-python copies every row into `scores`,
so a 300-token prompt costs 300 vocabulary rows to read one. Here a second context on the same
weights has a unified KV cache with several sequences: the shared context is decoded once in
sequence 0 (logits for its last token only), each option's sequence starts as a copy of it
(`llama_memory_seq_cp`, no recompute), and the continuations of all options go through one batch
that asks for logits only on the rows that are scored.

Many small items (`score_many`) share one batch: a 100-token MMLU context or a 5-token ARC option
leaves most of a 512-token batch empty, and llama.cpp's throughput grows with the batch. A wave
of items keeps their common prefix in sequence 0; each context token belongs to all of its own
options' sequences at once (one KV cell, several sequence ids), so a context is still computed once.
"""

import ctypes
import logging

import numpy as np

log = logging.getLogger(__name__)


def target_logprobs(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log-probability of each row's target, whether it is the row's argmax) for a [rows, vocab] matrix.

    The log-sum-exp runs in float32 after subtracting each row's max (as torch's log_softmax does):
    a float64 copy of 100 vocabulary rows cost ~85 ms, half of a HellaSwag item's scoring time."""
    rows = np.arange(len(targets))
    peak = logits.max(axis=1)
    log_norm = np.log(np.exp(logits - peak[:, None]).sum(axis=1, dtype=np.float64)) + peak
    return logits[rows, targets].astype(np.float64) - log_norm, logits.argmax(axis=1) == targets


def common_prefix(a: list[int], b: list[int], limit: int | None = None) -> int:
    """How many leading tokens `a` and `b` share (at most `limit`)."""
    limit = min(len(a), len(b), len(a) if limit is None else limit)
    same = 0
    while same < limit and a[same] == b[same]:
        same += 1
    return same


class MultiSequenceScorer:
    """Scores continuations of one context on a llama.cpp context with `n_seq` sequences."""

    def __init__(self, llm, n_ctx: int = 4096, n_batch: int = 512, n_seq: int = 16, n_threads: int | None = None,
                 token_logprobs: bool = False):
        import llama_cpp
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx, n_batch, n_batch
        params.n_seq_max, params.kv_unified = n_seq, True  # one cache shared by the options: copies are free
        params.n_threads = params.n_threads_batch = n_threads or llm.n_threads_batch
        self.context = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=n_seq, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.context.ctx)
        self.n_ctx, self.n_batch, self.n_seq = n_ctx, n_batch, n_seq
        self.token_logprobs = token_logprobs  # results gain each continuation token's logprob (router features)
        self.n_vocab = llm.n_vocab()
        self.cached: list[int] = []  # tokens held by sequence 0
        adapter = getattr(llm, "_lora_adapter", None)
        if adapter is not None:  # the same LoRA as the generation context, at the same scale
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(llm.lora_scale)
            if llama_cpp.llama_set_adapters_lora(self.context.ctx, adapters, 1, scales):
                raise RuntimeError("llama.cpp refused the LoRA adapter on the scoring context")

    # ---- batches -------------------------------------------------------------------------------
    def _decode(self, entries: list[tuple[int, int, tuple[int, ...], bool]]) -> np.ndarray:
        """Decode (token, position, sequences, wants_logits) entries; the logit rows asked for, in order."""
        rows = []
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start:start + self.n_batch]
            b = self.batch.batch
            b.n_tokens = len(chunk)
            for i, (token, pos, seqs, wants) in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, len(seqs), wants
                for j, seq in enumerate(seqs):
                    b.seq_id[i][j] = seq
            self.context.decode(self.batch)
            wanted = sum(1 for *_, wants in chunk if wants)
            if wanted:  # llama.cpp keeps the requested rows contiguous, in batch order: one copy
                rows.append(np.ctypeslib.as_array(self.context.get_logits(), shape=(wanted, self.n_vocab)).copy())
        return np.concatenate(rows) if rows else np.empty((0, self.n_vocab), np.float32)

    def _hold(self, tokens: list[int], last_row: bool = False) -> np.ndarray | None:
        """Sequence 0 holds `tokens`, reusing the cached prefix; with `last_row`, the logit row after
        the last token (which is then decoded again even when cached: its logits are needed)."""
        same = common_prefix(self.cached, tokens, len(tokens) - 1 if last_row else None)
        self._llama_cpp.llama_memory_seq_rm(self.memory, 0, same, -1)
        self.cached = self.cached[:same]
        todo = tokens[same:]
        rows = self._decode([(t, same + i, (0,), last_row and i == len(todo) - 1) for i, t in enumerate(todo)])
        self.cached = list(tokens)
        return rows[0] if last_row else None

    # ---- scoring -------------------------------------------------------------------------------
    def score(self, context: list[int], continuations: list[list[int]]) -> list[tuple]:
        """(sum of continuation token logprobs, whether greedy decoding would produce it[, per-token
        logprobs when `token_logprobs`]) per continuation."""
        results: list[tuple[float, bool] | None] = [None] * len(continuations)
        room = self.n_ctx - 1
        group: list[int] = []
        for index in sorted(range(len(continuations)), key=lambda i: len(continuations[i])):
            used = sum(len(continuations[i]) for i in group) + len(continuations[index])
            if group and (len(group) == self.n_seq - 1 or len(context) + used > room):
                self._score_group(context, continuations, group, results)
                group = []
            group.append(index)
        self._score_group(context, continuations, group, results)
        return results  # type: ignore[return-value]

    def _score_group(self, context, continuations, group, results) -> None:
        longest = sum(len(continuations[i]) for i in group)
        # As lm-eval's hf model: a context too long for the window loses its oldest tokens.
        keep = max(1, min(len(context), self.n_ctx - 1 - longest))
        context = context[-keep:]
        first_row = self._hold(context, last_row=True)
        entries, owners = [], []
        for seq, index in enumerate(group, start=1):
            self._llama_cpp.llama_memory_seq_cp(self.memory, 0, seq, -1, -1)
            for offset, token in enumerate(continuations[index][:-1]):
                entries.append((token, len(context) + offset, (seq,), True))
                owners.append(index)
        rows = self._decode(entries)
        owners = np.asarray(owners, dtype=np.int64)
        for seq, index in enumerate(group, start=1):
            results[index] = self._result(first_row, rows[owners == index], continuations[index])
            self._llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def _result(self, first_row: np.ndarray, rows: np.ndarray, continuation: list[int]) -> tuple:
        """One continuation's result from the context's last logit row and those of its own tokens."""
        logprobs, greedy = target_logprobs(np.concatenate([first_row[None, :], rows]), np.asarray(continuation))
        return (float(logprobs.sum()), bool(greedy.all())) + (
            ([float(v) for v in logprobs],) if self.token_logprobs else ())

    # ---- many items per batch ------------------------------------------------------------------
    def score_many(self, items: list[tuple[list[int], list[list[int]]]]) -> list[list[tuple]]:
        """`score(context, continuations)` of each item, packing consecutive items into shared batches
        (pass them sorted so neighbours share a prefix). An item too big for one batch goes alone."""
        results: list = [None] * len(items)
        wave: list[int] = []
        tokens = seqs = 0
        budget = min(self.n_batch, self.n_ctx // 2)  # the KV cache holds sequence 0's prefix and one wave
        for index, (context, continuations) in enumerate(items):
            size = len(context) + sum(len(c) - 1 for c in continuations)
            if size > budget or len(continuations) > self.n_seq - 1:
                results[index] = self.score(context, continuations)
                continue
            if wave and (tokens + size > budget or seqs + len(continuations) > self.n_seq - 1):
                self._score_wave(items, wave, results)
                wave, tokens, seqs = [], 0, 0
            wave.append(index)
            tokens, seqs = tokens + size, seqs + len(continuations)
        if wave:
            self._score_wave(items, wave, results)
        return results

    def _score_wave(self, items, wave: list[int], results: list) -> None:
        contexts = [items[i][0] for i in wave]
        shared = min(len(c) for c in contexts) - 1  # every context keeps a token of its own: its logit row
        for context in contexts[1:]:
            shared = common_prefix(contexts[0], context, shared)
        self._hold(contexts[0][:shared])
        entries, owners, seq = [], [], 1  # owners: per requested row, (item, option or -1 for the context's)
        for index in wave:
            context, continuations = items[index]
            option_seqs = tuple(range(seq, seq + len(continuations)))
            seq += len(continuations)
            for s in option_seqs:
                self._llama_cpp.llama_memory_seq_cp(self.memory, 0, s, -1, -1)
            tail = context[shared:]
            for k, token in enumerate(tail):
                entries.append((token, shared + k, option_seqs, k == len(tail) - 1))
            owners.append((index, -1))
            for option, (s, continuation) in enumerate(zip(option_seqs, continuations)):
                for offset, token in enumerate(continuation[:-1]):
                    entries.append((token, len(context) + offset, (s,), True))
                    owners.append((index, option))
        rows = self._decode(entries)
        for s in range(1, seq):
            self._llama_cpp.llama_memory_seq_rm(self.memory, s, -1, -1)
        row_of: dict[tuple[int, int], list[int]] = {}
        for row, owner in enumerate(owners):
            row_of.setdefault(owner, []).append(row)
        for index in wave:
            first_row = rows[row_of[(index, -1)][0]]
            results[index] = [self._result(first_row, rows[row_of.get((index, option), [])], continuation)
                              for option, continuation in enumerate(items[index][1])]
