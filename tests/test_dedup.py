"""MinHash dedup, filters and the judge's parser, without the stage around them."""

import random
import string

import numpy as np
import pytest
from datasketch import MinHash

from cogumi.data.dedup import MinHashParams, deduplicate
from cogumi.data.minhash import permutations, shingle_hashes, signatures
from cogumi.data.filters import LanguageFilter, pii_problem
from cogumi.data.judge import parse_domain, parse_scores


def _docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(3000)]
    return [" ".join(rng.choices(words, k=120)) for _ in range(n)]


def _near_copy(doc: str, rng: random.Random, edits: int = 3) -> str:
    words = doc.split()
    for _ in range(edits):
        words[rng.randrange(len(words))] = "edited"
    return " ".join(words)


def test_signatures_equal_datasketch_minhash():
    params = MinHashParams()
    texts = ["Hello world, a test of MinHash.", "ab", "", "Ünïcödé text with 中文 characters"]
    ours = signatures(texts, permutations(params.num_perm, params.seed), params.ngram)
    for text, sig in zip(texts, ours):
        reference = MinHash(num_perm=params.num_perm, seed=params.seed, hashfunc=lambda x: x)
        reference.update_batch(shingle_hashes(text, params.ngram))
        assert np.array_equal(reference.hashvalues, sig)


@pytest.mark.parametrize(("index", "workers"), [("datasketch", 1), ("compact", 2)])
def test_planted_near_duplicates_are_removed_and_distinct_docs_kept(index, workers):
    rng = random.Random(1)
    docs = _docs(400)
    planted = [_near_copy(docs[i], rng) for i in range(50)]
    items = docs + planted
    quality = [1.0] * len(docs) + [2.0] * len(planted)  # the copies are "better": they must win
    result = deduplicate(lambda: zip(items, quality), MinHashParams(index=index), workers=workers, chunk_size=64)
    removed = result.exact_removed | result.near_removed
    assert removed == set(range(50))  # the lower-quality originals, nothing else
    assert all(result.kept_instead[i] == 400 + i for i in range(50))


def test_exact_duplicates_ignore_case_and_spacing_and_keep_the_first_on_ties():
    items = [("Same  text here", 1.0), ("same text HERE", 1.0), ("other", 1.0)]
    result = deduplicate(lambda: iter(items), MinHashParams(), workers=1)
    assert result.exact_removed == {1} and not result.near_removed


def test_language_filter_drops_confident_non_english_and_keeps_short_text():
    lang = LanguageFilter(allowed=["en"], min_confidence=0.5)
    record = lambda text: {"messages": [{"role": "user", "content": text}]}  # noqa: E731
    assert lang.problem(*lang.detect(record("Describe the process of making crepes at home."))) is None
    assert lang.problem(*lang.detect(record("您好，我是一个人工智能助手，可以回答各种问题。"))) is not None
    assert lang.problem(*lang.detect(record("Bonjour, comment allez-vous aujourd'hui mon ami ?"))) is not None
    assert lang.problem(*lang.detect(record("hi"))) is None  # too short to tell: kept


def test_pii_screen():
    kinds = ["email", "phone", "us_ssn", "card"]
    assert pii_problem("write to jane.doe@gmail.com", kinds, []) == "pii:email"
    assert pii_problem("write to user@example.com", kinds, ["example.com"]) is None
    assert pii_problem("call me at (808) 782-1557", kinds, []) == "pii:phone"
    assert pii_problem("a fictional (555) 123-4567", kinds, []) is None
    assert pii_problem("card 4111 1111 1111 1111", kinds, []) == "pii:card"
    assert pii_problem("order 1234 5678 9012 3456", kinds, []) is None  # fails the Luhn check


def test_judge_reply_parsing_clamps_and_needs_all_four():
    assert parse_scores('{"accuracy": 3, "completeness": 2, "coherence": 1, "helpfulness": 5}') == {
        "accuracy": 3.0, "completeness": 2.0, "coherence": 1.0, "helpfulness": 3.0}
    assert parse_scores("Accuracy: 2\nCompleteness: 1\nCoherence: 2\nHelpfulness: 2")["accuracy"] == 2.0
    assert parse_scores('{"accuracy": 3}') is None
    assert parse_domain('{"accuracy": 1, "domain": "code"}') == "code"
    assert parse_domain('{"domain": "astrology"}') is None
