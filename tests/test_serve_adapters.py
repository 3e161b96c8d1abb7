"""LoRA hot-swap on the real embedded GGUF: two GGUF LoRAs (random PEFT adapters converted by
llama.cpp's converter) applied per request on one loaded model, never reloading it."""

import threading
import time

import httpx
import pytest
import uvicorn

from cogumi.serve.launch import free_port
from cogumi.serve.runtime import GenerationParams
from serve_helpers import build_test_lora

pytestmark = pytest.mark.slow
GREEDY = GenerationParams(max_tokens=16, temperature=0.0, seed=11)
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


@pytest.fixture(scope="module")
def loras():
    return {"alpha": build_test_lora("alpha", seed=1), "beta": build_test_lora("beta", seed=2)}


@pytest.fixture(scope="module")
def engine(loras):
    from cogumi.assets import embedded_model_dir
    from cogumi.serve.engine_local import LlamaEngine

    engine = LlamaEngine(embedded_model_dir() / "source.gguf", "smollm2-135m", n_ctx=512, n_threads=2,
                         modifiers=loras)
    yield engine
    engine.close()


def test_base_tokens_are_identical_before_and_after_adapters(engine):
    before = engine.generate(QUESTION, GREEDY)
    alpha = engine.generate(QUESTION, GREEDY, adapter="alpha")
    beta = engine.generate(QUESTION, GREEDY, adapter="beta")
    after = engine.generate(QUESTION, GREEDY)
    assert before.text and after.text == before.text
    assert len({before.text, alpha.text, beta.text}) == 3, (before.text, alpha.text, beta.text)
    assert alpha.timings["swap_ms"] > 0 and after.timings["swap_ms"] > 0  # real switches, measured
    assert engine.generate(QUESTION, GREEDY, adapter="alpha").text == alpha.text  # and back again
    assert engine.slots.loads == 2  # loaded once each at start, never reloaded


def test_an_lru_bound_of_one_adapter_still_answers_each_with_its_own(engine, loras):
    from cogumi.assets import embedded_model_dir
    from cogumi.serve.engine_local import LlamaEngine

    expected = {name: engine.generate(QUESTION, GREEDY, adapter=name).text for name in loras}
    small = LlamaEngine(embedded_model_dir() / "source.gguf", "smollm2-135m", n_ctx=512, n_threads=2,
                        modifiers=loras, max_resident_adapters=1)
    try:
        for name in ("alpha", "beta", "alpha"):
            assert small.generate(QUESTION, GREEDY, adapter=name).text == expected[name]
            assert small.slots.resident == [name]
        assert small.slots.loads == 3  # alpha, beta (alpha evicted), alpha again
    finally:
        small.close()


def test_concurrent_requests_on_different_adapters_get_their_own_output_and_record(engine):
    from cogumi.serve.app import build_app
    from cogumi.serve.auth import KeyRing
    from cogumi.serve.gate import Gate, Limits
    from cogumi.serve.monitoring import RequestLog
    from cogumi.serve.routing import RoutedRuntime

    sequential = {name: engine.generate(QUESTION, GREEDY, adapter=name).text for name in ("alpha", "beta")}
    app = build_app(RoutedRuntime(engine), Gate(KeyRing({}), Limits()), RequestLog(None))
    port = free_port()
    # A real uvicorn server (one event loop), as serve.py runs it; two client threads hit it at once.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    while not server.started:
        time.sleep(0.05)
    replies, barrier = {}, threading.Barrier(2)

    def ask(name):
        barrier.wait()
        replies[name] = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120, json={
            "model": f"cogumi/{name}", "messages": QUESTION, "max_tokens": 16, "temperature": 0, "seed": 11}).json()

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("alpha", "beta")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.should_exit = True
    serving.join(timeout=30)
    for name in ("alpha", "beta"):
        reply = replies[name]
        assert reply["choices"][0]["message"]["content"] == sequential[name]
        assert reply["cogumi"]["adapter"] == name and reply["cogumi"]["route"] == "modifier"
        assert reply["cogumi"]["decided_by"] == "override" and reply["model"] == f"cogumi/{name}"


def test_a_dissatisfied_follow_up_is_re_answered_through_the_modifier_and_logged(engine, tmp_path):
    import json

    from cogumi.serve.feedback import FeedbackLog
    from cogumi.serve.routing import RoutedRuntime
    from serve_helpers import KeywordRouter, PhraseDetector

    runtime = RoutedRuntime(engine, KeywordRouter(keywords={"alpha": ("python",), "beta": ("poem",)}),
                            PhraseDetector(), feedback=FeedbackLog(tmp_path / "feedback.jsonl"))
    question = [{"role": "user", "content": "Write python code that prints hello."}]
    first = runtime.chat(question, GREEDY, model="base")
    follow = question + [{"role": "assistant", "content": first.text},
                         {"role": "user", "content": "That is wrong, it doesn't work."}]
    second = runtime.chat(follow, GREEDY)
    assert (second.routing.route, second.routing.adapter, second.routing.decided_by) == ("modifier", "alpha",
                                                                                        "escalation")
    assert second.routing.escalated_from == "base"
    # The earlier question, answered again through the modifier (not the complaint answered).
    assert second.text == engine.generate(question, GREEDY, adapter="alpha").text != first.text
    [line] = [json.loads(x) for x in (tmp_path / "feedback.jsonl").read_text().splitlines()]
    assert line == {**line, "domain": "alpha", "prompt": question[0]["content"], "rejected": first.text,
                    "answer": second.text, "answer_route": "modifier"}
