"""Lexical features beside the embedding: scikit-learn's TF-IDF reproduced from stored arrays, part of the
router artifact, and an artifact whose lexical file or head width does not match is refused."""

import json

import numpy as np
import pytest

from cogumi.errors import ArtifactError, ConfigError
from cogumi.router import load_router
from cogumi.router.embedding import encoder_identity
from cogumi.router.heads import train_logistic
from cogumi.router.lexical import LEXICAL_FILE, LexicalFeatures

TEXTS = ["remind me to call mom at 6", "set a timer for ten minutes", "git rebase vs merge?",
         "regex for a uk postcode", "what's 15% of 80", "solve 2x + 3 = 11", "why is the sky blue",
         "who painted the mona lisa", "write a poem about rain", "any tips for sleeping better",
         "remind me to water the plants", "git stash pop conflict", "what's 20% of 45"]
NGRAMS = {"word": [1, 2], "char": [2, 5]}


def test_transform_matches_scikit_learn_tfidf_and_survives_save_and_load(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer

    lexical = LexicalFeatures.fit(TEXTS, NGRAMS, min_df=2, scale=0.5)
    expected = np.hstack([TfidfVectorizer(analyzer=a, ngram_range=(lo, hi), min_df=2, sublinear_tf=True)
                          .fit(TEXTS).transform(TEXTS + ["an unseen query about git"]).toarray()
                          for a, (lo, hi) in (("word", (1, 2)), ("char_wb", (2, 5)))])
    ours = lexical.transform(TEXTS + ["an unseen query about git"]).toarray()
    np.testing.assert_allclose(ours, 0.5 * expected, atol=1e-6)
    entry = lexical.save(tmp_path / LEXICAL_FILE)
    assert entry["features"] == expected.shape[1] and len(entry["sha256"]) == 64
    again = LexicalFeatures.load(tmp_path / LEXICAL_FILE)
    np.testing.assert_array_equal(again.transform(TEXTS).toarray(), lexical.transform(TEXTS).toarray())


def test_head_parts_give_the_logits_of_the_stacked_row():
    """A served query multiplies its embedding and its lexical row by their own weight slices (no sparse
    hstack); the logits must equal those of the stacked [embedding | lexical] row, for a logistic head and
    for a head with a hidden layer, and must not be those of a head whose slices are swapped."""
    from scipy import sparse

    from cogumi.router.heads import Head

    lexical = LexicalFeatures.fit(TEXTS, NGRAMS, min_df=2, scale=0.5)
    rng = np.random.default_rng(3)
    queries = TEXTS[:4] + ["an unseen query about git", "zzz"]
    dense = rng.normal(size=(len(queries), 16)).astype(np.float32)
    rows = lexical.transform(queries)
    stacked = sparse.hstack([sparse.csr_matrix(dense), rows], format="csr")
    width = 16 + lexical.size
    for sizes in ([width, 5], [width, 7, 5]):
        layers = [(rng.normal(size=(a, b)).astype(np.float32), rng.normal(size=b).astype(np.float32))
                  for a, b in zip(sizes[:-1], sizes[1:])]
        head = Head("logistic" if len(layers) == 1 else "mlp", layers)
        np.testing.assert_allclose(head.logits_parts(dense, rows), head.logits(stacked), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(head.probabilities_parts(dense, rows), head.probabilities(stacked), atol=1e-6)
        w, b = layers[0]
        shifted = Head(head.kind, [(np.roll(w, 1, axis=0), b)] + layers[1:])
        assert not np.allclose(shifted.logits_parts(dense, rows), head.logits(stacked), atol=1e-3)


def test_an_unknown_ngram_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="lexical.ngrams.chars"):
        LexicalFeatures.fit(TEXTS, {"chars": [2, 5]})


def _lexical_router(folder, rows: int | None = None):
    """A router whose head reads [embedding | lexical]; `rows` overrides the head's input width."""
    folder.mkdir(parents=True)
    lexical = LexicalFeatures.fit(TEXTS, NGRAMS, min_df=2)
    entry = lexical.save(folder / LEXICAL_FILE)
    rng = np.random.default_rng(0)
    x = np.hstack([rng.normal(size=(len(TEXTS), 384)) * 0.01, lexical.transform(TEXTS).toarray()])
    y = np.array([1 if ("remind" in t or "timer" in t) else 0 for t in TEXTS])
    head = train_logistic(x, y, 2, c=100.0)
    if rows is not None:
        head.layers = [(head.layers[0][0][:rows], head.layers[0][1])]
    head.save(folder / "head.npz")
    (folder / "router.json").write_text(json.dumps({"domains": ["other", "automation"], "head": "head.npz",
                                                    "encoder": encoder_identity(), "lexical": entry,
                                                    "threshold": 0.5, "calibrator": None}))
    return folder


def test_a_router_with_lexical_features_reads_the_words_of_the_query(tmp_path):
    router = load_router(_lexical_router(tmp_path / "router"))
    assert router.lexical is not None and router.head.inputs == 384 + router.lexical.size
    assert router.classify("remind me to feed the cat").domain == "automation"  # 'remind' is a lexical cue here
    assert router.classify("regex for a date").domain == "other"
    assert [p.domain for p in router.classify_texts(["set a timer for 5 minutes", "why is grass green"])] == \
        ["automation", "other"]
    with pytest.raises(ArtifactError, match="pass the texts"):
        router.classify_vectors(router.encoder.encode(["remind me"]))


def test_a_changed_or_missing_lexical_file_is_refused(tmp_path):
    folder = _lexical_router(tmp_path / "router")
    other = LexicalFeatures.fit(TEXTS[:8], NGRAMS, min_df=1)
    other.save(folder / LEXICAL_FILE)  # another vocabulary under the same name
    with pytest.raises(ArtifactError, match="not the lexical features this head was trained with"):
        load_router(folder)
    (folder / LEXICAL_FILE).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_router(folder)


def test_a_head_of_another_width_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="the head reads 384 inputs"):
        load_router(_lexical_router(tmp_path / "router", rows=384))  # embedding-only head, lexical spec


def test_lexical_features_with_another_encoder_are_still_refused(tmp_path):
    folder = _lexical_router(tmp_path / "router")
    spec = json.loads((folder / "router.json").read_text())
    spec["encoder"] = {"name": "all-mpnet-base-v2", "sha256": "0" * 64}
    (folder / "router.json").write_text(json.dumps(spec))
    with pytest.raises(ArtifactError, match="trained on encoder all-mpnet-base-v2"):
        load_router(folder)


def test_the_mlp_head_with_lexical_features_is_a_config_error():
    from cogumi.router.train_router import run

    with pytest.raises(ConfigError, match="lexical features need heads=\\[logistic\\]"):
        run(None, domains={}, sources={}, per_domain=1, val_share=0.1, test_share=0.1, heads=["logistic", "mlp"],
            mlp={}, threshold=0.5, min_domain_probability=0.4, model="base", gguf_type=None, calibration={},
            lexical={"ngrams": NGRAMS})
