"""Loading routers and detectors: refuse another encoder's heads; a missing artifact is exit 2 in the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cogumi.errors import ArtifactError
from cogumi.paths import PROJECT_ROOT
from cogumi.router import load_escalation, load_router
from cogumi.router.domain_data import handwritten_queries, split_of
from cogumi.router.embedding import encoder_identity
from cogumi.router.heads import Head


def _router_folder(folder, encoder: dict):
    folder.mkdir(parents=True)
    Head("logistic", [(np.zeros((384, 2), np.float32), np.zeros(2, np.float32))]).save(folder / "head.npz")
    (folder / "router.json").write_text(json.dumps({"domains": ["code", "general"], "head": "head.npz",
                                                    "encoder": encoder, "threshold": 0.5, "calibrator": None}))
    return folder


def test_a_router_trained_on_another_encoder_is_refused(tmp_path):
    folder = _router_folder(tmp_path / "router", {"name": "all-mpnet-base-v2", "sha256": "0" * 64})
    with pytest.raises(ArtifactError, match="trained on encoder all-mpnet-base-v2"):
        load_router(folder)


def test_a_detector_trained_on_another_encoder_is_refused(tmp_path):
    folder = tmp_path / "escalation"
    folder.mkdir()
    (folder / "escalation.json").write_text(json.dumps({"head": "head.npz", "threshold": 0.5,
                                                        "encoder": {"name": "other", "sha256": "1" * 64}}))
    with pytest.raises(ArtifactError, match="trained on encoder other"):
        load_escalation(folder)


def test_the_same_encoder_loads_and_classifies(tmp_path):
    router = load_router(_router_folder(tmp_path / "router", encoder_identity()))
    prediction = router.classify("how do I reverse a list in python")
    assert set(prediction.probabilities) == {"code", "general"}
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-3)


def test_cli_without_a_router_exits_2_with_a_clear_message(outputs):
    result = subprocess.run([sys.executable, "-m", "cogumi", "route", "hello there"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no router artifact" in result.stderr and "train.py stage=router" in result.stderr


def test_splits_follow_the_text_so_duplicates_share_one():
    assert split_of("What is 2+2?", 0.15, 0.15) == split_of("  what is 2+2? ", 0.15, 0.15)
    splits = [split_of(f"query number {i}", 0.15, 0.15) for i in range(2000)]
    assert 0.1 < splits.count("test") / 2000 < 0.2 and 0.6 < splits.count("train") / 2000 < 0.8


def test_handwritten_queries_cover_every_domain():
    queries = handwritten_queries()
    assert len(queries) >= 50
    assert {q.domain for q in queries} == {"reasoning", "math", "code", "automation", "general"}


def test_a_router_on_three_encoder_layers_loads_that_encoder_and_differs_from_all_six(tmp_path):
    from cogumi.router.embedding import shared_encoder

    router = load_router(_router_folder(tmp_path / "router", encoder_identity(layers=3)))
    assert len(router.encoder.transformer.encoder.layer) == 3 and router.encoder.identity["layers"] == 3
    text = ["how do I reverse a list in python"]
    three, six = router.encoder.encode(text), shared_encoder().encode(text)
    assert np.linalg.norm(three) == pytest.approx(1.0, abs=1e-4)
    assert (three @ six.T).item() < 0.99  # another vector space: a head must be trained on the one it uses


def test_an_encoder_with_more_layers_than_the_model_is_a_config_error():
    from cogumi.errors import ConfigError
    from cogumi.router.embedding import Encoder

    with pytest.raises(ConfigError, match="layers=9"):
        Encoder(layers=9)


def test_labelling_rules_first_match_wins_and_null_drops():
    from cogumi.router.domain_data import relabel

    rules = [{"source": "alpaca", "pattern": r"\bpython\b", "domain": "code"},
             {"source": "alpaca", "pattern": r"\bcalculate\b", "domain": "math"},
             {"source": "chatterbot", "file": ["science", "trivia"], "domain": "reasoning"},
             {"source": ["bfcl_live", "glaive_toolcall"], "pattern": r"\bcalculate\b", "domain": None}]
    assert relabel("Calculate this in Python", "alpaca", "general", rules) == "code"
    assert relabel("calculate 3 + 4", "alpaca", "general", rules) == "math"
    assert relabel("write a poem", "alpaca", "general", rules) == "general"
    assert relabel("what is a wavelength", "chatterbot/science", "general", rules) == "reasoning"
    assert relabel("hello", "chatterbot/greetings", "general", rules) == "general"
    assert relabel("please calculate my BMI", "glaive_toolcall", "automation", rules) is None
    assert relabel("book a table", "glaive_toolcall", "automation", rules) == "automation"


def test_an_int8_encoder_is_its_own_identity_close_to_fp32_and_unknown_quantization_is_refused(tmp_path):
    from cogumi.errors import ConfigError
    from cogumi.router.embedding import Encoder, shared_encoder

    router = load_router(_router_folder(tmp_path / "router", encoder_identity(layers=3, quantize="int8")))
    assert router.encoder.identity == encoder_identity(layers=3, quantize="int8")
    text = ["set a reminder for my dentist appointment tomorrow at 3pm"]
    assert (router.encoder.encode(text) @ shared_encoder(None, 3).encode(text).T).item() > 0.8
    with pytest.raises(ConfigError, match="quantize='int4'"):
        Encoder(layers=3, quantize="int4")
