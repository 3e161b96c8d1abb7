"""Keys hashed at rest, rate limiting, metrics text, and serve.py's config mistakes (fast: no model)."""


import pytest

from cogumi.errors import ConfigError
from cogumi.serve.auth import KeyRing, RateLimiter, add_key, hash_key, retry_after_header
from cogumi.serve.monitoring import Metrics, RequestLog
from conftest import run_entry


def test_keys_file_stores_only_hashes_and_identifies_the_key(tmp_path):
    keys_file = tmp_path / "keys.txt"
    alice = add_key(str(keys_file), "alice")
    bob = add_key(str(keys_file), "bob")
    text = keys_file.read_text()
    assert alice not in text and bob not in text and hash_key(alice) in text
    ring = KeyRing.load(str(keys_file), env_var=None)
    assert ring.identify(alice) == "alice" and ring.identify(bob) == "bob"
    assert ring.identify("cog-wrong") is None and ring.identify("") is None and ring.identify(None) is None
    assert oct(keys_file.stat().st_mode)[-3:] == "600"


def test_env_keys_are_hashed_and_a_bad_keys_file_names_the_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SERVE_KEYS", "k1, k2")
    ring = KeyRing.load(None, "TEST_SERVE_KEYS")
    assert ring.enabled and ring.identify("k2") == "env-1"
    assert not KeyRing.load(None, "TEST_SERVE_NO_SUCH_VAR").enabled
    bad = tmp_path / "keys.txt"
    bad.write_text("# comment\nalice plaintext-key\n")
    with pytest.raises(ConfigError, match="keys.txt:2"):
        KeyRing.load(str(bad), None)


def test_rate_limiter_allows_the_burst_then_says_how_long_to_wait():
    limiter = RateLimiter(per_minute=60, burst=3)  # one per second after the burst
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("a")
    assert 0.5 < wait <= 1.0 and retry_after_header(wait) == "1"
    assert limiter.check("b") == 0.0  # per key
    assert RateLimiter(per_minute=0, burst=1).check("a") == 0.0  # 0 = unlimited


def test_metrics_render_prometheus_text_and_the_log_omits_text_by_default(tmp_path):
    metrics = Metrics()
    metrics.observe("/v1/chat/completions", 200, 0.3, {"route": "base", "model": "m", "prompt_tokens": 5,
                                                     "completion_tokens": 7, "decode_tokens_per_s": 90.0})
    metrics.observe("/v1/chat/completions", 401, 0.001)
    text = metrics.render()
    assert 'cogumi_requests_total{endpoint="/v1/chat/completions",status="401"} 1' in text
    assert 'cogumi_request_latency_seconds_bucket{endpoint="/v1/chat/completions",le="0.25"} 1' in text
    assert 'cogumi_request_latency_seconds_bucket{endpoint="/v1/chat/completions",le="0.5"} 2' in text
    assert 'cogumi_routing_decisions_total{route="base",model="m"} 1' in text
    assert 'cogumi_tokens_total{kind="completion"} 7' in text
    log = RequestLog(tmp_path / "r.jsonl")
    log.write({"status": 200}, prompt="secret prompt", reply="secret reply")
    assert "secret" not in (tmp_path / "r.jsonl").read_text()
    RequestLog(tmp_path / "r2.jsonl", log_text=True).write({"status": 200}, prompt="p", reply="r")
    assert '"reply": "r"' in (tmp_path / "r2.jsonl").read_text()


@pytest.mark.parametrize("override, message", [
    ("stage.run.port=0", "stage.run.port=0"),
    ("stage.run.host=0.0.0.0", "no API keys"),
    ("stage.run.limits.bogus=1", "bogus"),
    ("stage.run.router_threads=0", "stage.run.router_threads=0"),
])
def test_serve_config_mistakes_exit_2_before_loading(override, message, outputs, monkeypatch):
    monkeypatch.delenv("COGUMI_API_KEYS", raising=False)
    result = run_entry("serve", override, "logger=none", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr + result.stdout
    assert "runtime:" not in result.stderr  # the model was never loaded


def test_plain_serve_py_serves_what_the_pipeline_built():
    from cogumi.entry import compose_entry

    cfg = compose_entry("serve", [])
    assert cfg.stage.name == "serve" and cfg.stage.run.model == "auto" and cfg.stage.run.host == "127.0.0.1"
    assert (cfg.stage.run.modifiers, cfg.stage.run.router, cfg.stage.run.engine) == ("promoted", "auto", "in-process")
    assert compose_entry("serve", ["stage=modelfile"]).stage.run._target_ == "cogumi.serve.modelfile.run"
