"""What a suite or gate evaluates: GGUF + LoRA targets, the back end of both gate sides, item pairing."""

import json

import pytest

from cogumi.artifacts import ArtifactStore
from cogumi.errors import ConfigError
from cogumi.evaluate import gguf_source
from cogumi.evaluate.gate import eval_kind
from cogumi.evaluate.harness import ModelTarget, per_sample
from cogumi.evaluate.suite import item_scores


class _Ctx:
    def __init__(self, store):
        self.store = store


def test_a_lora_reaches_llama_cpp_and_only_llama_cpp():
    name, args = ModelTarget("gguf", "/m/F16.gguf", lora="/a/adapter.gguf").lm_eval_model()
    assert name == "cogumi-gguf" and args["lora_path"] == "/a/adapter.gguf"
    with pytest.raises(ConfigError, match="kind=gguf"):
        ModelTarget("hf", "/m", lora="/a/adapter.gguf").lm_eval_model()


def test_gate_back_end_follows_the_candidate_unless_told():
    assert eval_kind("auto", "hf", None) == "hf"
    assert eval_kind("auto", "hf", "/a/adapter.gguf") == "gguf"  # a LoRA is applied by llama.cpp
    assert eval_kind("gguf", "hf", None) == "gguf"  # an HF model through its F16 export
    with pytest.raises(ConfigError):
        eval_kind("hf", "gguf", None)
    with pytest.raises(ConfigError):
        eval_kind("fast", "hf", None)


def test_lora_knob_takes_a_file_or_an_artifact_holding_one(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    with store.create("modifier", "m", {}, [], name="code") as out:
        (out.dir / "lora").mkdir()
        (out.dir / "lora" / "adapter.gguf").write_bytes(b"GGUF")
    with store.create("sft", "s", {}, [], name="plain") as out:
        (out.dir / "model").mkdir()
    ctx = _Ctx(store)
    path, identity = gguf_source.lora_file(ctx, "modifier/code")
    assert path.endswith("lora/adapter.gguf") and identity.ref == "modifier/code"
    assert gguf_source.lora_file(ctx, None) == (None, None)
    with pytest.raises(ConfigError, match="lora/adapter.gguf"):
        gguf_source.lora_file(ctx, "sft/plain")
    with pytest.raises(ConfigError, match="no such"):
        gguf_source.lora_file(ctx, str(tmp_path / "missing.gguf"))


def test_item_scores_pair_runs_by_the_documents_own_id(tmp_path):
    results = {"samples": {"cogumi_arc_easy": [
        {"doc_id": 0, "doc": {"id": "Mercury_1"}, "arguments": [("q", " a")], "resps": [[(-1.0, False)]],
         "filtered_resps": [(-1.0, False)], "target": 0, "acc_norm": 1.0},
        {"doc_id": 1, "doc": {"id": "Mercury_2"}, "arguments": [("q", " b")], "resps": [[(-2.0, False)]],
         "filtered_resps": [(-2.0, False)], "target": 1, "acc_norm": 0.0}]}}
    records = per_sample(results)
    assert [r["score"] for r in records] == [1.0, 0.0]
    store = ArtifactStore(tmp_path / "artifacts")
    with store.create("suite", "x", {}, [], name="old") as out:  # an artifact from before item_scores.json
        (out.dir / "samples.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert item_scores(out.artifact) == {"cogumi_arc_easy": {"Mercury_1": 1.0, "Mercury_2": 0.0}}
