"""`python -m cogumi chat`: a terminal chat with the served model (rich), streaming as it types.

Talks to the OpenAI-compatible API (`--url`, default the local serve.py), or with `--serve` starts
its own server on a free loopback port. Sessions are JSON files: `/save`, `/load`, `--session`.
"""

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cogumi.errors import CogumiError
from cogumi.paths import outputs_dir

MODES = {"precise": 0.0, "balanced": 0.7, "creative": 1.0}  # mode -> temperature
ROUTING_MODES = ("speed", "balanced", "quality")
HELP = """commands:
  /help                 this list
  /mode [name]          show or set the sampling mode: precise (greedy), balanced, creative
  /route [name]         show or set the routing mode: speed, balanced, quality (or server = its default)
  /save [file]          save the session (default outputs/chat/sessions/<time>.json)
  /load <file>          load a saved session and continue it
  /stats                tokens, time to first token and speed, last answer and session
  /new                  forget the conversation (keeps mode and stats)
  /exit                 leave (Ctrl-D works too)"""


@dataclass
class ChatSession:
    messages: list[dict] = field(default_factory=list)
    mode: str = "balanced"
    model: str | None = None
    turns: list[dict] = field(default_factory=list)  # per answer: tokens, ttft_s, seconds, route
    routing_mode: str | None = None  # None = the server's default

    @property
    def temperature(self) -> float:
        return MODES[self.mode]

    def save(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else outputs_dir() / "chat" / "sessions" / f"{datetime.now():%Y%m%d-%H%M%S}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"messages": self.messages, "mode": self.mode, "model": self.model,
                                    "turns": self.turns}, indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ChatSession":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(messages=list(data["messages"]), mode=data.get("mode", "balanced"),
                       model=data.get("model"), turns=list(data.get("turns", [])))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise CogumiError(f"cannot load session '{path}': {err}")

    def stats(self) -> str:
        if not self.turns:
            return "no answers yet"
        last, tokens = self.turns[-1], sum(t["tokens"] for t in self.turns)
        seconds = sum(t["seconds"] for t in self.turns)
        return (f"last: {last['tokens']} tokens, first token {last['ttft_s'] * 1000:.0f} ms, "
                f"{last['tokens'] / max(last['seconds'], 1e-9):.1f} tok/s, route {last['route']}\n"
                f"session: {len(self.turns)} answers, {tokens} tokens in {seconds:.1f} s, "
                f"{len(self.messages)} messages, mode {self.mode}")

    def command(self, line: str) -> tuple[str, bool]:
        """Run a slash command: (what to show, whether to exit)."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if name == "/help":
            return HELP, False
        if name == "/exit":
            return "bye", True
        if name == "/mode":
            if not arg:
                return f"mode {self.mode} (temperature {self.temperature}); modes: {', '.join(MODES)}", False
            if arg not in MODES:
                return f"unknown mode '{arg}'; modes: {', '.join(MODES)}", False
            self.mode = arg
            return f"mode set to {arg} (temperature {self.temperature})", False
        if name == "/route":
            if not arg:
                return f"routing mode {self.routing_mode or 'server default'}; modes: {', '.join(ROUTING_MODES)}", False
            if arg not in ROUTING_MODES + ("server",):
                return f"unknown routing mode '{arg}'; modes: {', '.join(ROUTING_MODES)}, server", False
            self.routing_mode = None if arg == "server" else arg
            return f"routing mode set to {arg}", False
        if name == "/save":
            return f"session saved to {self.save(arg or None)}", False
        if name == "/load":
            if not arg:
                return "usage: /load <file>", False
            loaded = ChatSession.load(arg)
            self.messages, self.mode, self.model, self.turns = loaded.messages, loaded.mode, loaded.model, loaded.turns
            return f"loaded {len(self.messages)} messages from {arg}", False
        if name == "/stats":
            return self.stats(), False
        if name == "/new":
            self.messages = []
            return "conversation cleared", False
        return f"unknown command {name}; /help lists them", False


def _routing_note(turn: dict) -> str:
    confidence = turn.get("confidence")
    return (f"adapter {turn.get('adapter') or '-'} · domain {turn.get('domain') or '-'} · confidence "
            f"{f'{confidence:.2f}' if isinstance(confidence, (int, float)) else '-'} · by {turn.get('decided_by')}")


def stream_answer(client, session: ChatSession, max_tokens: int, on_text) -> dict:
    """Ask for the next answer, calling on_text per piece; record the turn and return it."""
    started = time.perf_counter()
    first, pieces, usage, routing = None, [], None, {}
    stream = client.chat.completions.create(
        model=session.model or "auto", messages=session.messages, max_tokens=max_tokens,
        temperature=session.temperature, stream=True, stream_options={"include_usage": True},
        extra_body={"cogumi": {"mode": session.routing_mode}} if session.routing_mode else None)
    for chunk in stream:
        routing = (chunk.model_extra or {}).get("cogumi") or routing
        usage = chunk.usage or usage
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter()
            pieces.append(chunk.choices[0].delta.content)
            on_text(chunk.choices[0].delta.content)
    text = "".join(pieces)
    session.messages.append({"role": "assistant", "content": text})
    turn = {"tokens": usage.completion_tokens if usage else len(pieces),
            "ttft_s": round((first or time.perf_counter()) - started, 3),
            "seconds": round(time.perf_counter() - started, 3), "route": routing.get("route", "?"),
            "model": routing.get("model"), "adapter": routing.get("adapter"), "domain": routing.get("domain"),
            "confidence": routing.get("confidence"), "decided_by": routing.get("decided_by")}
    session.turns.append(turn)
    return turn


def run_chat(url: str | None, key: str | None, session_file: str | None, max_tokens: int, serve: bool,
             model: str | None = None) -> None:
    from contextlib import nullcontext

    import openai
    from rich.console import Console

    from cogumi.serve.launch import running_server

    import logging

    for noisy in ("httpx", "httpx2", "openai"):  # one line per HTTP call would garble the chat
        logging.getLogger(noisy).setLevel(logging.WARNING)
    console = Console()
    session = ChatSession.load(session_file) if session_file else ChatSession()
    session.model = model or session.model
    server = running_server(log_path=outputs_dir() / "chat" / "server.log") if serve else nullcontext(None)
    (outputs_dir() / "chat").mkdir(parents=True, exist_ok=True)
    with server as started:
        base = f"{started[0]}/v1" if started else (url or "http://127.0.0.1:8000/v1")
        client = openai.OpenAI(base_url=base, api_key=key or os.environ.get("COGUMI_API_KEY", "none"),
                               max_retries=0)
        console.print(f"[bold]Cogumi chat[/] · {base} · mode {session.mode} · /help for commands")
        while True:
            try:
                line = console.input("[bold green]you>[/] ").strip()
            except (EOFError, KeyboardInterrupt):
                break
            if not line:
                continue
            if line.startswith("/"):
                try:
                    shown, leave = session.command(line)
                except CogumiError as err:
                    shown, leave = f"[red]{err}[/]", False
                console.print(shown)
                if leave:
                    break
                continue
            session.messages.append({"role": "user", "content": line})
            console.print("[bold cyan]cogumi>[/] ", end="")
            try:
                turn = stream_answer(client, session, max_tokens, lambda t: console.print(t, end="", markup=False))
            except openai.OpenAIError as err:
                session.messages.pop()
                console.print(f"\n[red]error: {err}[/]")
                continue
            console.print(f"\n[dim]{turn['route']} · {turn['tokens']} tokens · "
                          f"{turn['tokens'] / max(turn['seconds'], 1e-9):.1f} tok/s · {_routing_note(turn)}[/]")
