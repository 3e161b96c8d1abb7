"""The engines behind Cogumi's gateway, each a real server on loopback:
- `engine=llama-server`: llama.cpp's own server supervised by serve.py, answering the `openai` client
  (streaming included) with per-request LoRA, and gone when serve.py stops;
- `engine=openai-upstream`: `llama_cpp.server` serving the base and a LoRA as two model names
  (the vLLM `--enable-lora` shape), routed to by Cogumi's model names."""

import json
import os
import subprocess
import sys
import time

import httpx
import openai
import pytest

from cogumi.serve.launch import free_port, running_server
from cogumi.serve.runtime import GenerationParams
from serve_helpers import build_test_lora

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
GREEDY = GenerationParams(max_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def lora():
    return build_test_lora("alpha", seed=1)


@pytest.fixture(scope="module")
def in_process_answers(lora):
    """What the in-process engine answers on the base and through the LoRA (the reference)."""
    from cogumi.assets import embedded_model_dir
    from cogumi.serve.engine_local import LlamaEngine

    engine = LlamaEngine(embedded_model_dir() / "source.gguf", "smollm2-135m", n_ctx=512, n_threads=2,
                         modifiers={"alpha": lora})
    try:
        return {name: engine.generate(QUESTION, GREEDY, adapter=adapter).text
                for name, adapter in (("base", None), ("alpha", "alpha"))}
    finally:
        engine.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_llama_server_engine_answers_the_openai_client_and_stops_with_serve(tmp_path, lora):
    outputs = tmp_path / "outputs"
    with running_server("stage.run.engine=llama-server", "stage.run.llama_server.parallel=2", "stage.run.n_ctx=512",
                        f"stage.run.modifiers={{alpha:'{lora}'}}", "stage.run.chat_page=false",
                        env={"COGUMI_OUTPUTS": str(outputs)}, log_path=tmp_path / "serve.log") as (base, _):
        health = httpx.get(f"{base}/health").json()
        assert health["engine"]["engine"] == "llama-server" and health["engine"]["parallel"] == 2
        pid = health["engine"]["pid"]
        assert _pid_alive(pid)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["smollm2-135m", "cogumi/alpha"]
        kwargs = dict(messages=QUESTION, max_tokens=12, temperature=0)
        base_reply = client.chat.completions.create(model="base", **kwargs)
        alpha_reply = client.chat.completions.create(model="cogumi/alpha", **kwargs)
        assert base_reply.model_extra["cogumi"]["route"] == "base"
        assert alpha_reply.model_extra["cogumi"]["adapter"] == "alpha"
        assert base_reply.choices[0].message.content.strip() and alpha_reply.usage.completion_tokens > 0
        stream = client.chat.completions.create(model="cogumi/alpha", stream=True, **kwargs)
        chunks = list(stream)
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) > 1 and "".join(pieces) == alpha_reply.choices[0].message.content  # greedy: same
        assert any((c.model_extra or {}).get("cogumi", {}).get("adapter") == "alpha" for c in chunks)
        # Per-request adapters on shared slots: the base after the modifier is the base before it.
        base_again = client.chat.completions.create(model="base", **kwargs)
        assert base_again.choices[0].message.content == base_reply.choices[0].message.content
        assert alpha_reply.choices[0].message.content != base_reply.choices[0].message.content
    deadline = time.time() + 20
    while _pid_alive(pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _pid_alive(pid), "llama-server outlived serve.py"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, lora):
    """llama_cpp.server with two model names: the base and the base + LoRA (vLLM's --enable-lora shape)."""
    from cogumi.assets import embedded_model_dir

    folder = tmp_path_factory.mktemp("upstream")
    gguf = str(embedded_model_dir() / "source.gguf")
    common = {"model": gguf, "n_ctx": 512, "n_threads": 2, "verbose": False}
    config = {"host": "127.0.0.1", "port": free_port(), "models": [
        {**common, "model_alias": "smollm2-135m"}, {**common, "model_alias": "smollm2-alpha", "lora_path": str(lora)}]}
    (folder / "config.json").write_text(json.dumps(config))
    log = open(folder / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--config_file", str(folder / "config.json")],
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{config['port']}/v1"
    deadline = time.time() + 120
    while True:
        try:
            httpx.get(f"{url}/models", timeout=2)
            break
        except httpx.HTTPError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"llama_cpp.server did not start: {(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


def test_openai_upstream_engine_maps_modifiers_to_model_names(upstream, in_process_answers):
    from fastapi.testclient import TestClient

    from cogumi.assets import embedded_model_dir
    from cogumi.serve.app import build_app
    from cogumi.serve.auth import KeyRing
    from cogumi.serve.engine_local import ChatTemplate
    from cogumi.serve.engine_upstream import UpstreamEngine
    from cogumi.serve.gate import Gate, Limits
    from cogumi.serve.monitoring import RequestLog
    from cogumi.serve.routing import RoutedRuntime

    engine = UpstreamEngine(upstream, "smollm2-135m", modifier_models={"alpha": "smollm2-alpha"},
                            template=ChatTemplate.from_gguf(embedded_model_dir() / "source.gguf"), n_ctx=512)
    client = TestClient(build_app(RoutedRuntime(engine), Gate(KeyRing({}), Limits()), RequestLog(None)))
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["smollm2-135m", "cogumi/alpha"]
    body = {"messages": QUESTION, "max_tokens": 12, "temperature": 0}
    for model, expected in (("cogumi/alpha", "alpha"), ("base", "base")):
        reply = client.post("/v1/chat/completions", json={**body, "model": model}).json()
        assert reply["choices"][0]["message"]["content"] == in_process_answers[expected], (model, reply)
        assert reply["cogumi"]["model"] == (model if model != "base" else "smollm2-135m")
        assert reply["usage"]["completion_tokens"] > 0
    assert client.post("/v1/chat/completions", json={**body, "model": "cogumi/beta"}).status_code == 404
