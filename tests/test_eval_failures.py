"""Failure clustering separates planted clusters; judge verdicts parse; the teacher labels over loopback."""

import numpy as np
import pytest

from cogumi.evaluate import clustering, judge

# Planted clusters: tight groups of near-paraphrases on three unrelated subjects.
TOPICS = {
    "arithmetic": [f"What is {a} plus {b}? Add the two numbers." for a, b in
                   [(17, 25), (3, 9), (140, 12), (71, 8), (250, 75), (13, 7), (44, 56), (6, 19)]],
    "cooking": [f"How long should I bake the {dish} in the oven, and at what temperature?" for dish in
                ["bread", "chicken", "lasagna", "cookies", "salmon", "potatoes", "pizza", "cake"]],
    "python": [f"How do I {verb} a list in Python with a built-in function?" for verb in
               ["sort", "reverse", "copy", "sum", "filter", "flatten", "shuffle", "slice"]],
}


@pytest.mark.slow
def test_clustering_separates_planted_clusters(tmp_path):
    from sklearn.metrics import adjusted_rand_score

    texts = [t for group in TOPICS.values() for t in group]
    truth = [i for i, group in enumerate(TOPICS.values()) for _ in group]
    vectors = clustering.embed(texts)
    k, silhouettes = clustering.choose_k(vectors, 2, 6)
    assert k == 3, silhouettes
    labels = clustering.cluster(vectors, k)
    assert adjusted_rand_score(truth, labels) > 0.8
    names = clustering.tfidf_labels(texts, labels)
    assert any("python" in name for name in names.values())
    clustering.plot_projection(tmp_path / "p.png", vectors, labels, names)
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_embedder_is_the_shipped_minilm():
    assert (clustering.embedder_dir() / "model.safetensors").is_file()


def test_judge_ratings_parse_and_decide():
    a, b = judge.parse_ratings("A: 3, 4, 6, 8\nB: 9, 9, 8, 7")
    assert a == {"correctness": 3, "completeness": 4, "clarity": 6, "conciseness": 8}
    assert judge.outcome(a, b) == "loss" and judge.outcome(b, a) == "win" and judge.outcome(a, a) == "tie"
    assert judge.parse_ratings("I think both are fine.") == (None, None)
    assert judge.outcome(None, b) == "unparsed"


@pytest.mark.slow
def test_teacher_labels_and_judges_over_loopback(local_teacher, tmp_path):
    from cogumi.teachers.client import TeacherClient

    client = TeacherClient(local_teacher, ledger_path=tmp_path / "ledger.jsonl")
    label = clustering.teacher_label(client, TOPICS["python"])
    assert isinstance(label, str) and len(label) < 200
    verdict = judge.judge(client, "What is 2 + 2?", "5", "2 + 2 = 4")
    assert verdict.outcome in ("win", "tie", "loss", "unparsed") and verdict.raw
    assert client.calls == 2
    assert len((tmp_path / "ledger.jsonl").read_text().splitlines()) == 2
