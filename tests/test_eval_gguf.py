"""The GGUF lm-eval model scores the same tokens as lm-eval's `hf` model, from llama.cpp's own logits."""

import pytest

PROMPTS = [
    ("Question: What is the capital of France?\nAnswer:", " Paris"),
    ("Question: What is the capital of France?\nAnswer:", " Berlin"),
    ("The quick brown fox jumps over the lazy", " dog"),
    ("def add(a, b):\n    return", " a + b"),
    ("", "Hello world"),
    ("Water boils at 100 degrees ", "Celsius at sea level."),
]


def _requests(pairs):
    from lm_eval.api.instance import Instance

    return [Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i) for i, pair in enumerate(pairs)]


@pytest.mark.slow
def test_gguf_loglikelihoods_match_hf(embedded_model):
    from lm_eval.models.huggingface import HFLM

    from cogumi.evaluate.llama_lm import LlamaCppLM

    gguf = LlamaCppLM(model_path=str(embedded_model / "source.gguf"), n_ctx=512)
    gguf_scores = gguf.loglikelihood(_requests(PROMPTS), disable_tqdm=True)
    # Tokenisation must agree, or the two back ends would score different continuations.
    for context, continuation in PROMPTS:
        ctx_ids, cont_ids = gguf.encode_pair(context, continuation)
        if context:
            assert len(cont_ids) >= 1 and ctx_ids + cont_ids == gguf.tok_encode(context + continuation)
    del gguf
    hf = HFLM(pretrained=str(embedded_model), dtype="float32", device="cpu", batch_size=2)
    hf_scores = hf.loglikelihood(_requests(PROMPTS), disable_tqdm=True)
    # source.gguf is Q4_1 and the HF folder is its exact dequantization: only llama.cpp's 8-bit
    # quantized activations separate them (measured: 0.01-0.45 nats; the echo-logprobs bug is off by tens).
    diffs = [abs(g - h) for (g, _), (h, _) in zip(gguf_scores, hf_scores)]
    assert max(diffs) < 0.6, list(zip(PROMPTS, gguf_scores, hf_scores))
    assert sum(diffs) / len(diffs) < 0.3
    assert [g[1] for g in gguf_scores] == [h[1] for h in hf_scores]  # same greedy verdicts
    # The ranking that multiple choice depends on is the same.
    assert (gguf_scores[0][0] > gguf_scores[1][0]) == (hf_scores[0][0] > hf_scores[1][0])


@pytest.mark.slow
def test_gguf_prefix_cache_gives_the_same_scores(embedded_model):
    from cogumi.evaluate.llama_lm import LlamaCppLM

    lm = LlamaCppLM(model_path=str(embedded_model / "source.gguf"), n_ctx=512)
    first = lm.loglikelihood(_requests(PROMPTS[:2]), disable_tqdm=True)
    lm.loglikelihood(_requests(PROMPTS[2:4]), disable_tqdm=True)  # evict the shared context
    again = lm.loglikelihood(_requests(PROMPTS[1:2]), disable_tqdm=True)
    assert again[0][0] == pytest.approx(first[1][0], abs=1e-3)


def test_llama_threads_follow_the_load_unless_pinned(monkeypatch):
    from cogumi.evaluate import llama_lm

    monkeypatch.setattr(llama_lm.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(llama_lm.os, "getloadavg", lambda: (20.0, 20.0, 20.0))
    monkeypatch.delenv("COGUMI_LLAMA_THREADS", raising=False)
    assert llama_lm.default_threads() == 1  # a busy machine: spinning barriers would cost ~10x
    monkeypatch.setenv("COGUMI_LLAMA_THREADS", "2")
    assert llama_lm.default_threads() == 2  # the other load is niced: the run says it owns the cores


@pytest.mark.slow
def test_items_sharing_a_batch_score_as_they_do_alone(embedded_model, tmp_path):
    """score_many packs several items into one llama.cpp batch (a context token in all of its
    options' sequences); each item must score as it does through the one-item path. F32 weights:
    with quantized ones the batch's shape alone moves scores by ~0.1 (activation rounding), which
    would hide a small mistake; a continuation that missed its context would be off by nats."""
    from cogumi.assets import converter_dir
    from cogumi.compress.gguf_export import convert_hf_to_gguf
    from cogumi.evaluate.llama_lm import LlamaCppLM

    gguf = convert_hf_to_gguf(embedded_model, tmp_path / "F32.gguf", converter_dir(), "F32")
    lm = LlamaCppLM(model_path=str(gguf), n_ctx=512, n_batch=64)
    questions = ["What is the capital of France?", "What is the capital of Italy?", "Which planet is the largest?",
                 "What do bees make?", "How many legs does a spider have?"]
    options = [" Paris", " Rome", " Jupiter", " honey", " eight", " a small red bicycle with a bell"]
    items = []
    for question in questions:
        pairs = [lm.encode_pair(f"Question: {question}\nAnswer:", option) for option in options]
        items.append((pairs[0][0], [continuation for _, continuation in pairs]))
    items = sorted(items) + [(items[0][0] * 8, items[0][1])]  # the last: more tokens than a batch holds, scored alone
    alone = [lm.scorers[0].score(context, continuations) for context, continuations in items]
    together = lm.scorers[0].score_many(items)
    for mine, reference in zip(together, alone):
        assert [greedy for _, greedy in mine] == [greedy for _, greedy in reference]
        assert [s for s, _ in mine] == pytest.approx([s for s, _ in reference], abs=0.02)
        # the right answer per question still wins, as it does alone
        assert max(range(len(mine)), key=lambda j: mine[j][0]) == max(range(len(reference)), key=lambda j: reference[j][0])


@pytest.mark.slow
def test_requests_spread_over_two_scoring_contexts_come_back_in_their_own_places(embedded_model, tmp_path):
    """Two 1-thread contexts score chunks side by side; every request's result must land at its own index,
    as one context scores it (F32 weights: the same batches give the same scores)."""
    from cogumi.assets import converter_dir
    from cogumi.compress.gguf_export import convert_hf_to_gguf
    from cogumi.evaluate.llama_lm import LlamaCppLM

    gguf = str(convert_hf_to_gguf(embedded_model, tmp_path / "F32.gguf", converter_dir(), "F32"))
    topics = ["the sea", "a cat", "mountains", "the moon", "bread", "winter", "a river", "music"]
    # 40 items: more than two 16-item chunks, so each context gets work and the last chunk is short
    pairs = [(f"Write about {topic} number {k}:", f" It is {adjective}.") for k in range(5) for topic in topics
             for adjective in ("calm", "old")]
    one = LlamaCppLM(model_path=gguf, n_ctx=256, n_threads=2, scoring_contexts=1).loglikelihood(_requests(pairs))
    two_lm = LlamaCppLM(model_path=gguf, n_ctx=256, n_threads=2, scoring_contexts=2)
    two = two_lm.loglikelihood(_requests(pairs))
    assert len(two_lm.scorers) == 2 and all(s.context is not None for s in two_lm.scorers)
    assert [g for _, g in two] == [g for _, g in one]
    assert [s for s, _ in two] == pytest.approx([s for s, _ in one], abs=1e-4)
    assert len({round(s, 3) for s, _ in two}) > 40  # distinct scores: a swapped result would show


def test_row_logprobs_score_every_target_of_a_row_as_log_softmax_does():
    """The context's last row carries one target per option; the others one each. Each score must be the
    float64 log-softmax entry, and the greedy flag true only for the row's argmax."""
    import numpy as np

    from cogumi.evaluate.llama_scoring import row_logprobs

    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((3, 49152)) * 4).astype(np.float32)
    logits[1, 7] = 60.0  # row 1's argmax
    targets = [(5, 9, 11), (7,), (3, 3)]
    scored = row_logprobs(logits, targets, np.empty((8, 49152), np.float32))
    exact = logits.astype(np.float64)
    exact = exact - np.log(np.exp(exact - exact.max(1, keepdims=True)).sum(1, keepdims=True)) - exact.max(1, keepdims=True)
    for row, (logprobs, greedy) in zip(range(3), scored):
        assert np.allclose(logprobs, exact[row, list(targets[row])], atol=1e-5)
        assert list(greedy) == [t == int(logits[row].argmax()) for t in targets[row]]
    assert list(scored[1][1]) == [True] and not scored[0][1].any()
