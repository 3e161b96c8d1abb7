"""Rows of any supported layout -> one record schema (HELPERS.md's dataset-artifact convention).

`{"id", "instruction", "response", "messages": [{"role", "content"}...], "metadata": {...}}`:
`messages` is authoritative (multi-turn); `instruction` is its first user message and `response` its
last assistant message, so single-turn consumers still work. A row that cannot be mapped raises
`MalformedRow` with the reason; the caller quarantines it.
"""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from cogumi.data.sources import RawRow, SourceSpec, check_available, read_rows
from cogumi.paths import cache_dir

ROLES = ("system", "user", "assistant", "tool")


class MalformedRow(ValueError):
    """Missing field, wrong type, or a layout the format does not describe."""


def _get(row, key: str, spec: SourceSpec, required: bool = True):
    name = spec.fields.get(key, key)
    if not isinstance(row, dict):
        raise MalformedRow(f"row is {type(row).__name__}, expected an object")
    if name not in row or row[name] is None:
        if required:
            raise MalformedRow(f"missing field '{name}'")
        return None
    return row[name]


def _text(value, what: str) -> str:
    """A message content: a string, or a list of parts (`{"type": "text", "value"|"text": ...}`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):
        parts = [p.get("value", p.get("text")) for p in value if p.get("type", "text") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise MalformedRow(f"{what} is {type(value).__name__}, expected a string")


def _alpaca(row, spec: SourceSpec) -> list[dict]:
    instruction = _text(_get(row, "instruction", spec), "instruction")
    extra = _get(row, "input", spec, required=False)
    if extra is not None:
        extra = _text(extra, "input")
        instruction = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = []
    system = _get(row, "system", spec, required=False)
    if system:
        messages.append({"role": "system", "content": _text(system, "system")})
    return messages + [{"role": "user", "content": instruction},
                       {"role": "assistant", "content": _text(_get(row, "response", spec), "response")}]


def _conversation(row, spec: SourceSpec, default_role: str, default_content: str) -> list[dict]:
    """ShareGPT (`conversations`, `from`/`value`) and OpenAI-style (`messages`, `role`/`content`)."""
    turns = _get(row, "messages", spec)
    if not isinstance(turns, list):
        raise MalformedRow(f"'{spec.fields.get('messages', 'messages')}' is {type(turns).__name__}, expected a list")
    role_key, content_key = spec.fields.get("role", default_role), spec.fields.get("content", default_content)
    role_map = {"human": "user", "gpt": "assistant", **spec.roles}
    messages = []
    tools = _get(row, "tools", spec, required=False)
    if tools:
        tools = tools if isinstance(tools, str) else json.dumps(tools)
        messages.append({"role": "system", "content": f"You can call these functions:\n{tools}"})
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise MalformedRow(f"turn {number} lacks '{role_key}'/'{content_key}'")
        role = role_map.get(turn[role_key], turn[role_key])
        if role not in ROLES:
            raise MalformedRow(f"turn {number}: unknown role '{turn[role_key]}' (map it in `roles`)")
        messages.append({"role": role, "content": _text(turn[content_key], f"turn {number} content")})
    return messages


def _chatterbot(row, spec: SourceSpec) -> list[dict]:
    if not isinstance(row, list) or len(row) < 2 or not all(isinstance(t, str) for t in row):
        raise MalformedRow("a chatterbot conversation needs at least a statement and a reply")
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(row)]


def _chitchat(row, spec: SourceSpec) -> list[dict]:
    """chitchat-dataset: `messages` is a list of turns, each a list of `{text, sender}` by one person."""
    turns = _get(row, "messages", spec)
    if not isinstance(turns, list) or not turns:
        raise MalformedRow("chitchat `messages` must be a non-empty list of turns")
    messages, first_sender = [], None
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, list) or not turn or not all(isinstance(m, dict) and isinstance(m.get("text"), str)
                                                                 for m in turn):
            raise MalformedRow(f"turn {number} is not a list of {{text, sender}}")
        first_sender = first_sender or turn[0].get("sender")
        role = "user" if turn[0].get("sender") == first_sender else "assistant"
        messages.append({"role": role, "content": "\n".join(m["text"] for m in turn)})
    return messages


_LAYOUTS = {
    "alpaca": _alpaca,
    "messages": lambda row, spec: _conversation(row, spec, "role", "content"),
    "sharegpt": lambda row, spec: _conversation(row, spec, "from", "value"),
    "chatterbot": _chatterbot,
    "chitchat": _chitchat,
}


def _trim(messages: list[dict], max_turns: int | None) -> list[dict]:
    """Cut to `max_turns` non-system messages, ending on an assistant message."""
    if max_turns is not None:
        kept, count = [], 0
        for m in messages:
            count += m["role"] != "system"
            if count > max_turns:
                break
            kept.append(m)
        messages = kept
    while messages and messages[-1]["role"] != "assistant":
        messages = messages[:-1]
    return messages


def normalise(row, spec: SourceSpec, file: str, line: int, ordinal: int = 0) -> dict:
    """One record in the dataset schema; `metadata.source` records where it came from.

    The id hashes the source, file, line and the row's ordinal in the source (one-line JSON files
    hold many rows on line 1), so it is stable across runs of the same data.
    """
    messages = _LAYOUTS[spec.format](row, spec)
    for placeholder, value in spec.replace.items():
        for m in messages:
            m["content"] = m["content"].replace(placeholder, value)
    messages = _trim(messages, spec.max_turns)
    user = next((m["content"] for m in messages if m["role"] == "user"), "")
    response = messages[-1]["content"] if messages else ""
    ident = hashlib.blake2b(f"{spec.name}\0{Path(file).name}\0{line}\0{ordinal}".encode(), digest_size=8).hexdigest()
    return {
        "id": f"{spec.name}-{ident}",
        "instruction": user,
        "response": response,
        "messages": messages,
        "metadata": {"teacher": spec.teacher,
                     "source": {"name": spec.name, "distribution": spec.distribution or spec.origin,
                                "file": _short(file),
                                "line": line, "split": spec.split if spec.hub else None}},
    }


def _short(file: str) -> str:
    """Files under the project cache are recorded relative to it (the same on every machine)."""
    try:
        return str(Path(file).relative_to(cache_dir()))
    except ValueError:
        return file


def record_text(record: dict) -> str:
    """All message text of a record, for language ID, dedup and decontamination."""
    return "\n".join(m["content"] for m in record["messages"] if m["role"] != "system")


def well_formed_records(spec: SourceSpec) -> Iterator[tuple[RawRow, dict]]:
    """(raw row, normalised record) for every row of a source that reads and normalises; the rest is
    skipped silently (readers that only sample a source; curate reports and quarantines them instead)."""
    check_available(spec)
    for ordinal, raw in enumerate(read_rows(spec)):
        if raw.row is None:
            continue
        try:
            yield raw, normalise(raw.row, spec, raw.file, raw.line, ordinal)
        except MalformedRow:
            continue
