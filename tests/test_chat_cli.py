"""`python -m cogumi chat`: session commands, and the real CLI driven under tmux."""

import json
import shlex
import subprocess
import sys
import time
import uuid

import pytest

from cogumi.paths import PROJECT_ROOT
from cogumi.serve.chat_cli import ChatSession


def test_session_commands_save_and_load(tmp_path):
    session = ChatSession(messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    session.turns.append({"tokens": 3, "ttft_s": 0.1, "seconds": 0.5, "route": "base", "model": "m"})
    assert session.command("/mode creative") == ("mode set to creative (temperature 1.0)", False)
    assert "unknown mode" in session.command("/mode wild")[0] and session.mode == "creative"
    shown, _ = session.command(f"/save {tmp_path / 's.json'}")
    assert str(tmp_path / "s.json") in shown
    other = ChatSession()
    assert other.command(f"/load {tmp_path / 's.json'}")[0].startswith("loaded 2 messages")
    assert other.messages == session.messages and other.mode == "creative"
    assert "session: 1 answers, 3 tokens" in other.command("/stats")[0]
    assert other.command("/exit") == ("bye", True)
    assert "unknown command" in other.command("/nope")[0]
    assert "/save" in other.command("/help")[0]


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _wait_for(session: str, text: str, timeout: float, after: int = 0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        screen = _tmux("capture-pane", "-p", "-S", "-200", "-t", session)
        if screen.count(text) > after:
            return screen
        time.sleep(0.5)
    raise AssertionError(f"'{text}' not on screen within {timeout} s:\n{screen}")


def _start(session: str, outputs, *args: str) -> None:
    command = (f"cd {shlex.quote(str(PROJECT_ROOT))} && COGUMI_OUTPUTS={shlex.quote(str(outputs))} "
               f"{shlex.quote(sys.executable)} -m cogumi chat {' '.join(args)}; sleep 60")
    _tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", command)


@pytest.mark.slow
def test_cli_under_tmux_answers_saves_and_reloads(tmp_path):
    saved = tmp_path / "session.json"
    first, second = f"cogumi-chat-{uuid.uuid4().hex[:6]}", f"cogumi-chat-{uuid.uuid4().hex[:6]}"
    try:
        _start(first, tmp_path / "outputs", "--serve", "--max-tokens", "12")
        _wait_for(first, "you>", 180)
        _tmux("send-keys", "-t", first, "/mode precise", "Enter")
        _wait_for(first, "mode set to precise", 10)
        _tmux("send-keys", "-t", first, "What is the capital of France?", "Enter")
        screen = _wait_for(first, "tok/s", 120)
        answer = screen.split("cogumi>", 1)[1].split("base ·", 1)[0].strip()
        assert answer, screen
        _tmux("send-keys", "-t", first, f"/save {saved}", "Enter")
        _wait_for(first, "session saved", 10)
        _tmux("send-keys", "-t", first, "/exit", "Enter")
        _wait_for(first, "bye", 10)
        data = json.loads(saved.read_text())
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"] and data["mode"] == "precise"

        # A new CLI loads the session and knows the conversation (no server needed to inspect it).
        _start(second, tmp_path / "outputs", "--url", "http://127.0.0.1:9/v1")
        _wait_for(second, "you>", 60)
        _tmux("send-keys", "-t", second, f"/load {saved}", "Enter")
        _wait_for(second, "loaded 2 messages", 10)
        _tmux("send-keys", "-t", second, "/stats", "Enter")
        screen = _wait_for(second, "session: 1 answers", 10)
        assert "mode precise" in screen
    finally:
        for name in (first, second):
            subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
