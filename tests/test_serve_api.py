"""`python serve.py` end to end with the real `openai` client, and the API's 4xx/5xx contract.

One real server (subprocess, loopback, bearer key) for the client round trips; the error cases run
in-process against the same app code with a real runtime and deliberately tight limits.
"""

import json
import time

import httpx
import openai
import pytest

from cogumi.serve.launch import running_server

pytestmark = pytest.mark.slow
KEY = "test-serve-key"
QUESTION = [{"role": "user", "content": "Name a primary colour."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    outputs = tmp_path_factory.mktemp("serve-outputs")
    with running_server("stage.run.log_prompts=false", env={"COGUMI_API_KEYS": KEY, "COGUMI_OUTPUTS": str(outputs)},
                        log_path=outputs / "server.log") as (base_url, process):
        yield base_url, outputs
    assert process.returncode == 0, (outputs / "server.log").read_text()[-3000:]
    # Stopping the server writes its session record.
    sessions = list((outputs / "artifacts" / "serve").glob("*/session.json"))
    assert sessions and json.loads(sessions[0].read_text())["metrics"]["requests"] >= 1


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY, max_retries=0)


def test_openai_client_chat_round_trip_carries_usage_and_routing(client):
    assert [m.id for m in client.models.list().data] == ["smollm2-135m"]
    reply = client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=12,
                                           temperature=0, seed=7)
    assert reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 5
    routing = reply.model_extra["cogumi"]
    assert routing["route"] == "base" and routing["model"] == "smollm2-135m"
    assert routing["timings"]["total_ms"] > 0


def test_streaming_yields_the_same_greedy_answer_in_pieces(client):
    whole = client.chat.completions.create(messages=QUESTION, model="smollm2-135m", max_tokens=12, temperature=0)
    stream = client.chat.completions.create(messages=QUESTION, model="smollm2-135m", max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1
    assert "".join(pieces) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert any(c.model_extra.get("cogumi") for c in chunks)


def test_completions_endpoint_honours_stop(client):
    reply = client.completions.create(model="smollm2-135m", prompt="1, 2, 3, 4,", max_tokens=10, temperature=0,
                                      stop=[","])
    assert "," not in reply.choices[0].text and reply.choices[0].finish_reason == "stop"


def test_missing_or_wrong_key_is_401(server, client):
    base_url, _ = server
    assert httpx.get(f"{base_url}/v1/models").status_code == 401
    response = httpx.post(f"{base_url}/v1/chat/completions", json={"messages": QUESTION})
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"
    wrong = openai.OpenAI(base_url=f"{base_url}/v1", api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=2)


def test_health_metrics_and_request_log_without_prompt_text(server, client):
    base_url, outputs = server
    client.chat.completions.create(model="smollm2-135m", messages=QUESTION, max_tokens=2)
    health = httpx.get(f"{base_url}/health").json()
    assert health["status"] == "ok" and len(health["model_sha256"]) == 64
    assert health["router_threads"] == 1  # stage.run.router_threads: torch's threads in the server process
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'cogumi_requests_total{endpoint="/v1/chat/completions",status="200"}' in metrics
    assert 'cogumi_requests_total{endpoint="/v1/chat/completions",status="401"}' in metrics
    lines = [json.loads(x) for x in (outputs / "serve" / "requests.jsonl").read_text().splitlines()]
    assert any(x["status"] == 200 and x.get("completion_tokens", 0) > 0 for x in lines)
    assert "primary colour" not in (outputs / "serve" / "requests.jsonl").read_text()


def test_a_closed_stream_stops_its_generation(server):
    base_url, outputs = server
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"messages": [{"role": "user", "content": "Write a very long essay about rivers."}],
            "max_tokens": 500, "stream": True, "temperature": 0.9, "seed": 3}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=120) as response:
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # one token seen: hang up
    log = outputs / "serve" / "requests.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and '"status": 499' not in log.read_text():
        time.sleep(0.2)
    assert '"status": 499' in log.read_text()
    # The next request gets the model at once: the hung-up generation stopped instead of running 500 tokens.
    after = httpx.post(f"{base_url}/v1/chat/completions", headers=headers,
                       json={"messages": QUESTION, "max_tokens": 1}, timeout=120).json()
    assert after["cogumi"]["timings"]["queue_ms"] < 3000, after["cogumi"]


def test_lm_eval_local_chat_completions_generates_through_the_api(server, monkeypatch):
    from lm_eval.api.instance import Instance
    from lm_eval.models.api_models import JsonChatStr
    from lm_eval.models.openai_completions import LocalChatCompletion

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    lm = LocalChatCompletion(base_url=f"{server[0]}/v1/chat/completions", model="smollm2-135m",
                             tokenized_requests=False, num_concurrent=1, max_retries=1)
    chats = [JsonChatStr(json.dumps(QUESTION)), JsonChatStr(json.dumps([{"role": "user", "content": "Count: 1, 2,"}]))]
    requests = [Instance("generate_until", {}, (chat, {"until": ["\n\n"], "max_gen_toks": 8, "temperature": 0}), i)
                for i, chat in enumerate(chats)]
    answers = lm.generate_until(requests, disable_tqdm=True)
    assert len(answers) == 2 and all(isinstance(a, str) and a.strip() for a in answers)


# ---- the error contract, in-process ----------------------------------------------------------
@pytest.fixture(scope="module")
def runtime():
    from cogumi.assets import embedded_model_dir
    from cogumi.serve.engine_local import LlamaEngine
    from cogumi.serve.routing import RoutedRuntime

    return RoutedRuntime(LlamaEngine(embedded_model_dir() / "source.gguf", "smollm2-135m", n_ctx=256, n_threads=2))


def _client(runtime, keys=("k1",), **limits):
    from fastapi.testclient import TestClient

    from cogumi.serve.app import build_app
    from cogumi.serve.auth import KeyRing, hash_key
    from cogumi.serve.gate import Gate, Limits
    from cogumi.serve.monitoring import RequestLog

    gate = Gate(KeyRing({k: hash_key(k) for k in keys}), Limits(**limits))
    return TestClient(build_app(runtime, gate, RequestLog(None)), headers={"Authorization": "Bearer k1"}), gate


def test_over_the_rate_is_429_with_retry_after(runtime):
    client, _ = _client(runtime, rate_per_minute=6, rate_burst=2)
    statuses = [client.post("/v1/chat/completions", json={"messages": []}).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
    response = client.post("/v1/chat/completions", json={"messages": []})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({}, "messages"),
    ({"messages": QUESTION, "temperature": "hot"}, "temperature"),
    ({"messages": QUESTION, "max_tokens": 100000}, "max_tokens"),
    ({"messages": QUESTION, "stream": "yes"}, "stream"),
])
def test_malformed_body_is_400_naming_the_field(runtime, body, param):
    client, _ = _client(runtime)
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param and param in response.json()["error"]["message"]


def test_bad_json_unknown_model_oversize_and_full_queue(runtime):
    client, gate = _client(runtime, max_request_bytes=2000)
    bad = client.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_json"
    unknown = client.post("/v1/chat/completions", json={"messages": QUESTION, "model": "gpt-9"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    huge = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x" * 5000}]})
    assert huge.status_code == 413
    # Under the byte cap but over the 256-token context window: also 413, before any generation.
    long_prompt = " ".join(["word"] * 300)
    over_ctx = client.post("/v1/completions", json={"prompt": long_prompt, "max_tokens": 16})
    assert over_ctx.status_code == 413 and over_ctx.json()["error"]["code"] == "context_length_exceeded"
    gate.pending = gate.limits.queue_size + 1  # as if the queue were full
    busy = client.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 2})
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    gate.pending = 0
    ok = client.post("/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 2})
    assert ok.status_code == 200 and ok.json()["cogumi"]["route"] == "base"
