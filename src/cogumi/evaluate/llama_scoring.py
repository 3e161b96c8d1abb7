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


def row_logprobs(logits: np.ndarray, targets: list[tuple[int, ...]], scratch: np.ndarray) -> list[tuple]:
    """Per row of a [rows, vocab] matrix, (log-probability of each of its targets, whether each is the
    row's argmax). A row may have several targets: the context's last row scores every option's first token.

    Reads llama.cpp's logit buffer in place and reuses `scratch` for the exponentials: copying 100
    vocabulary rows cost as much as the log-sum-exp itself. The sum runs in float32 after subtracting each
    row's max (as torch's log_softmax does): within 1e-5 nats of a float64 sum on HellaSwag rows."""
    work = scratch[:len(logits)]
    peak = logits.max(axis=1)
    np.subtract(logits, peak[:, None], out=work)
    np.exp(work, out=work)
    log_norm = np.log(work.sum(axis=1)) + peak
    best = logits.argmax(axis=1)
    return [(np.asarray([logits[r, t] for t in row_targets], dtype=np.float64) - float(log_norm[r]),
             np.asarray(row_targets) == best[r]) for r, row_targets in enumerate(targets)]


def common_prefix(a: list[int], b: list[int], limit: int | None = None) -> int:
    """How many leading tokens `a` and `b` share (at most `limit`)."""
    limit = min(len(a), len(b), len(a) if limit is None else limit)
    same = 0
    while same < limit and a[same] == b[same]:
        same += 1
    return same


def _rows_by_owner(scored: list[tuple], owners: list) -> dict:
    """The scored rows of one decode grouped by their owner (a continuation, or an item's option), in order."""
    grouped: dict = {}
    for row, owner in zip(scored, owners):
        grouped.setdefault(owner, []).append(row)
    return grouped


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
        self.scratch = np.empty((n_batch, self.n_vocab), np.float32)  # exponentials of one batch's rows
        adapter = getattr(llm, "_lora_adapter", None)
        if adapter is not None:  # the same LoRA as the generation context, at the same scale
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(llm.lora_scale)
            if llama_cpp.llama_set_adapters_lora(self.context.ctx, adapters, 1, scales):
                raise RuntimeError("llama.cpp refused the LoRA adapter on the scoring context")

    # ---- batches -------------------------------------------------------------------------------
    def _decode(self, entries: list[tuple[int, int, tuple[int, ...], tuple[int, ...]]]) -> list[tuple]:
        """Decode (token, position, sequences, targets) entries; for each entry with targets, in order,
        the log-probabilities of those targets after it and whether each is the greedy token."""
        scored = []
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start:start + self.n_batch]
            b = self.batch.batch
            b.n_tokens = len(chunk)
            for i, (token, pos, seqs, targets) in enumerate(chunk):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, len(seqs), bool(targets)
                for j, seq in enumerate(seqs):
                    b.seq_id[i][j] = seq
            self.context.decode(self.batch)
            targets = [t for *_, t in chunk if t]
            if targets:  # llama.cpp keeps the requested rows contiguous, in batch order
                logits = np.ctypeslib.as_array(self.context.get_logits(), shape=(len(targets), self.n_vocab))
                scored += row_logprobs(logits, targets, self.scratch)
        return scored

    def _hold(self, tokens: list[int], targets: tuple[int, ...] = ()) -> tuple | None:
        """Sequence 0 holds `tokens`, reusing the cached prefix; with `targets`, their scores after the
        last token (which is then decoded again even when cached: its logits are needed)."""
        same = common_prefix(self.cached, tokens, len(tokens) - 1 if targets else None)
        self._llama_cpp.llama_memory_seq_rm(self.memory, 0, same, -1)
        self.cached = self.cached[:same]
        todo = tokens[same:]
        scored = self._decode([(t, same + i, (0,), targets if i == len(todo) - 1 else ())
                               for i, t in enumerate(todo)])
        self.cached = list(tokens)
        return scored[0] if targets else None

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
        first = self._hold(context, tuple(continuations[i][0] for i in group))
        entries, owners = [], []
        for seq, index in enumerate(group, start=1):
            self._llama_cpp.llama_memory_seq_cp(self.memory, 0, seq, -1, -1)
            continuation = continuations[index]
            for offset, token in enumerate(continuation[:-1]):
                entries.append((token, len(context) + offset, (seq,), (continuation[offset + 1],)))
                owners.append(index)
        rows_of = _rows_by_owner(self._decode(entries), owners)
        for seq, index in enumerate(group, start=1):
            results[index] = self._result(first, seq - 1, rows_of.get(index, []))
            self._llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def _result(self, first: tuple, option: int, rows: list[tuple]) -> tuple:
        """One continuation's result: its first token's score (the `option`-th target of the context's
        last row) and those of its other tokens (one target per row)."""
        logprobs = [first[0][option]] + [lp[0] for lp, _ in rows]
        greedy = bool(first[1][option]) and all(bool(g[0]) for _, g in rows)
        return (float(sum(logprobs)), greedy) + (([float(v) for v in logprobs],) if self.token_logprobs else ())

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
        entries, owners, seq = [], [], 1  # owners: per scored row, (item, option or -1 for the context's)
        for index in wave:
            context, continuations = items[index]
            option_seqs = tuple(range(seq, seq + len(continuations)))
            seq += len(continuations)
            for s in option_seqs:
                self._llama_cpp.llama_memory_seq_cp(self.memory, 0, s, -1, -1)
            tail = context[shared:]
            firsts = tuple(c[0] for c in continuations)
            for k, token in enumerate(tail):
                entries.append((token, shared + k, option_seqs, firsts if k == len(tail) - 1 else ()))
            owners.append((index, -1))
            for option, (s, continuation) in enumerate(zip(option_seqs, continuations)):
                for offset, token in enumerate(continuation[:-1]):
                    entries.append((token, len(context) + offset, (s,), (continuation[offset + 1],)))
                    owners.append((index, option))
        scored = self._decode(entries)
        for s in range(1, seq):
            self._llama_cpp.llama_memory_seq_rm(self.memory, s, -1, -1)
        rows_of = _rows_by_owner(scored, owners)
        for index in wave:
            first = rows_of[(index, -1)][0]
            results[index] = [self._result(first, option, rows_of.get((index, option), []))
                              for option in range(len(items[index][1]))]
