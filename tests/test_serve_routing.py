"""The routed runtime and its API without a model: which route answers, what the `cogumi` record
says, model names (404 listing what is served), modes, escalation into the feedback file, metrics.

`ScriptedEngine` is a test-local implementation of Cogumi's own `Engine` protocol: it answers with
the adapter's name and returns chosen probe log-probabilities, so every routing branch is reachable.
The real engines are covered by test_serve_adapters.py and test_serve_engines.py (slow).
"""

import json

import pytest
from fastapi.testclient import TestClient

from cogumi.serve.app import build_app
from cogumi.serve.auth import KeyRing
from cogumi.serve.feedback import FeedbackLog
from cogumi.serve.gate import Gate, Limits
from cogumi.serve.monitoring import RequestLog
from cogumi.serve.routing import RoutedRuntime
from cogumi.serve.runtime import EngineReply, GenerationParams, UnknownModelError
from serve_helpers import KeywordRouter, PhraseDetector

PARAMS = GenerationParams(max_tokens=8, temperature=0.0)


class ScriptedEngine:
    parallel = 1
    n_ctx = 512
    info = {"engine": "scripted"}

    def __init__(self, name="tiny", modifiers=("code",), probe_logprob=-0.1):
        self.name, self.modifiers, self.probe_logprob = name, tuple(modifiers), probe_logprob
        self.calls = []

    def count_tokens(self, text):
        return len(text.split())

    def chat_prompt(self, messages):
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def generate(self, prompt, params, adapter=None, on_text=None, cancelled=None):
        self.calls.append((prompt if isinstance(prompt, str) else prompt[-1]["content"], adapter))
        text = f"{self.name}+{adapter or 'base'} answers"
        if on_text:
            on_text(text)
        return EngineReply(text, "stop", 3, 3, {"swap_ms": 1.5 if adapter else 0.0, "ttft_ms": 1.0, "total_ms": 2.0})

    def probe(self, prompt, max_tokens):
        return [self.probe_logprob] * max_tokens

    def close(self):
        pass


def _runtime(tmp_path, probe_logprob=-0.1, teacher=False, mode="balanced"):
    return RoutedRuntime(ScriptedEngine(probe_logprob=probe_logprob), KeywordRouter(), PhraseDetector(),
                         ScriptedEngine("teacher-model", modifiers=()) if teacher else None, mode, 4,
                         FeedbackLog(tmp_path / "feedback" / "feedback.jsonl"))


def _ask(runtime, text, **kw):
    return runtime.chat([{"role": "user", "content": text}], PARAMS, **kw)


def test_balanced_mode_keeps_a_confident_base_and_upgrades_an_unsure_one(tmp_path):
    sure = _ask(_runtime(tmp_path, probe_logprob=-0.05), "Write a python function that reverses a list")
    assert sure.routing.route == "base" and sure.routing.domain == "code"
    assert sure.routing.confidence > 0.5 and sure.routing.decided_by == "router"
    unsure = _ask(_runtime(tmp_path, probe_logprob=-3.0), "Write a python function that reverses a list")
    assert unsure.routing.route == "modifier" and unsure.routing.adapter == "code"
    assert unsure.text == "tiny+code answers" and unsure.routing.confidence < 0.5
    assert unsure.routing.probabilities["code"] > unsure.routing.probabilities["math"]
    timings = unsure.routing.timings
    assert {"route_ms", "probe_ms", "swap_ms", "queue_ms", "ttft_ms"} <= set(timings) and timings["swap_ms"] == 1.5


def test_no_probe_when_the_domain_has_nothing_better_than_the_base(tmp_path):
    runtime = _runtime(tmp_path, probe_logprob=-3.0)
    done = _ask(runtime, "What is the sum of 2 and 3?")  # math: no math modifier, no teacher
    assert done.routing.route == "base" and done.routing.domain == "math"
    assert runtime.router.confidences == [] and "probe_ms" not in done.routing.timings


def test_speed_and_quality_modes_per_request(tmp_path):
    runtime = _runtime(tmp_path, probe_logprob=-3.0)
    speed = _ask(runtime, "python code please", mode="speed")
    assert speed.routing.route == "base" and speed.routing.decided_by == "mode" and speed.routing.mode == "speed"
    quality = _ask(_runtime(tmp_path, probe_logprob=-0.01), "python code please", mode="quality")
    assert quality.routing.route == "modifier" and quality.routing.mode == "quality"


def test_forced_models_and_unknown_ones(tmp_path):
    runtime = _runtime(tmp_path)
    assert runtime.models() == ["tiny", "cogumi/code"]
    forced = _ask(runtime, "hello", model="cogumi/code")
    assert (forced.routing.route, forced.routing.adapter, forced.routing.decided_by) == ("modifier", "code", "override")
    assert _ask(runtime, "python code", model="base").routing.route == "base"
    with pytest.raises(UnknownModelError, match="cogumi/code"):
        runtime.check_model("cogumi/law")


def test_a_dissatisfied_follow_up_is_answered_one_route_up_and_logged(tmp_path):
    runtime = _runtime(tmp_path, probe_logprob=-0.05, teacher=True)
    question = {"role": "user", "content": "Write python code to reverse a list"}
    first = runtime.chat([question], PARAMS)
    assert first.routing.route == "base"
    follow = [question, {"role": "assistant", "content": first.text}, {"role": "user", "content": "That's wrong."}]
    second = runtime.chat(follow, PARAMS)
    assert second.routing.decided_by == "escalation" and second.routing.escalated_from == "base"
    assert second.routing.route == "modifier" and second.text == "tiny+code answers"
    assert runtime.engine.calls[-1] == ("Write python code to reverse a list", "code")  # the earlier question
    # Still not happy: one more step up, to the teacher.
    third = runtime.chat([question, {"role": "assistant", "content": second.text},
                          {"role": "user", "content": "Still wrong, useless."}], PARAMS)
    assert third.routing.route == "teacher" and third.routing.escalated_from == "modifier"
    lines = [json.loads(line) for line in (tmp_path / "feedback" / "feedback.jsonl").read_text().splitlines()]
    assert [(x["answer_route"], x["rejected"]) for x in lines] == [("modifier", first.text), ("teacher", second.text)]
    assert lines[0]["prompt"] == question["content"] and lines[0]["domain"] == "code" and lines[0]["time"]


def test_a_satisfied_follow_up_is_a_normal_turn(tmp_path):
    runtime = _runtime(tmp_path)
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
             {"role": "user", "content": "Thanks, great answer"}]
    assert runtime.chat(turns, PARAMS).routing.decided_by != "escalation"
    assert not (tmp_path / "feedback" / "feedback.jsonl").exists()


def test_api_models_404_override_field_and_metrics(tmp_path):
    runtime = _runtime(tmp_path, probe_logprob=-3.0)
    client = TestClient(build_app(runtime, Gate(KeyRing({}), Limits()), RequestLog(None)))
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny", "cogumi/code"]
    unknown = client.post("/v1/chat/completions", json={"model": "cogumi/law", "messages": [
        {"role": "user", "content": "hi"}]})
    assert unknown.status_code == 404 and "cogumi/code" in unknown.json()["error"]["message"]
    routed = client.post("/v1/chat/completions", json={"model": "auto", "messages": [
        {"role": "user", "content": "python function please"}]}).json()
    assert routed["cogumi"]["route"] == "modifier" and routed["model"] == "cogumi/code"
    forced = client.post("/v1/chat/completions", json={"cogumi": {"modifier": "base", "mode": "speed"}, "messages": [
        {"role": "user", "content": "python function please"}]}).json()
    assert forced["cogumi"]["route"] == "base" and forced["cogumi"]["decided_by"] == "override"
    bad_mode = client.post("/v1/chat/completions", json={"cogumi": {"mode": "turbo"}, "messages": [
        {"role": "user", "content": "x"}]})
    assert bad_mode.status_code == 400 and bad_mode.json()["error"]["param"] == "cogumi.mode"
    metrics = client.get("/metrics").text
    assert 'cogumi_route_latency_seconds_count{route="modifier",adapter="code"} 1' in metrics
    assert 'cogumi_route_latency_seconds_count{route="base",adapter="none"} 1' in metrics
    assert "cogumi_adapter_swap_seconds_count{} 1" in metrics
