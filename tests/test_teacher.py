"""The teacher client against a real OpenAI-compatible server on loopback."""

import json

import pytest

from cogumi.errors import ConfigError
from cogumi.teachers.client import TeacherClient, TeacherError
from cogumi.teachers.spec import TeacherSpec


@pytest.mark.slow
def test_teacher_answers_and_the_ledger_adds_up(local_teacher, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    client = TeacherClient(local_teacher, ledger_path=ledger)
    reply = client.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
    client.chat([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert reply.text.strip() and reply.model
    assert reply.input_tokens > 0 and 0 < reply.output_tokens <= 16
    assert reply.cost_usd == pytest.approx((reply.input_tokens * 1.0 + reply.output_tokens * 2.0) / 1e6)
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert len(entries) == 2 == client.calls
    assert sum(e["cost_usd"] for e in entries) == pytest.approx(client.summary()["cost_usd"], abs=1e-6)
    assert "text" not in entries[0]  # the ledger records cost, not content


def test_unreachable_teacher_is_a_clear_error():
    spec = TeacherSpec(name="nowhere", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(TeacherError, match="nowhere.*127.0.0.1:9"):
        TeacherClient(spec, max_retries=0, timeout_s=5).chat([{"role": "user", "content": "hi"}])


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("COGUMI_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="COGUMI_TEST_KEY"):
        TeacherSpec(name="paid", base_url="http://x/v1", model="m", api_key_env="COGUMI_TEST_KEY").api_key()
