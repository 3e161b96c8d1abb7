"""Raw rows of the configured sources, each with where it came from (file and line, or row index).

Local JSON/JSONL/YAML files are read here line by line, because a bad line must be reported with its
line number and must not stop the rest; `datasets` (which stops at the first bad line) reads what is
already typed: Arrow folders saved with `save_to_disk`, single `.arrow` files and hub ids (`hub:`).
"""

import gzip
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.errors import AssetMissingError, ConfigError

log = logging.getLogger(__name__)

FORMATS = ("alpaca", "messages", "sharegpt", "chatterbot", "chitchat")


@dataclass(frozen=True)
class SourceSpec:
    """One entry of `data.sources`: where the rows are, how their fields map, how many to take."""

    name: str
    format: str  # alpaca | messages | sharegpt | chatterbot | chitchat (see normalise.py)
    path: str | None = None  # local file or folder
    hub: str | None = None  # a `datasets` hub id, the real-scale code path
    split: str = "train"
    fields: dict = field(default_factory=dict)  # schema key -> field name in the rows
    roles: dict = field(default_factory=dict)  # row role name -> user|assistant|system|tool
    replace: dict = field(default_factory=dict)  # literal placeholder -> text (template variables)
    max_records: int | None = None  # read at most this many rows
    weight: float = 1.0  # share of the final mix when `mix_max_records` caps it
    max_turns: int | None = None  # long conversations are cut to their first N messages
    distribution: str | None = None  # provenance: PyPI distribution==version or hub id
    teacher: str | None = None  # the model that wrote the responses, when known (metadata.teacher)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ConfigError(f"data.sources.{self.name}.format='{self.format}': use one of {FORMATS}")
        if (self.path is None) == (self.hub is None):
            raise ConfigError(f"data.sources.{self.name}: give exactly one of `path` or `hub`")
        if self.weight <= 0:
            raise ConfigError(f"data.sources.{self.name}.weight={self.weight}: must be > 0")

    @property
    def origin(self) -> str:
        return self.hub if self.hub is not None else str(self.path)


@dataclass(frozen=True)
class RawRow:
    """A row as read, or the reason it could not be read (`row` is None then)."""

    file: str
    line: int  # 1-based line in the file (JSON/JSONL/YAML), or 1-based row index (Arrow, hub)
    row: object = None
    error: str | None = None
    raw: str = ""  # the offending text, for the quarantine file


def named_specs(spec_type, entries: dict | None, where: str) -> list:
    """A config mapping `name -> fields` as `spec_type(name=..., **fields)`; an entry set to null is off.

    A field the spec does not know is a ConfigError naming `<where>.<name>`.
    """
    specs = []
    for name, entry in (entries or {}).items():
        if entry is None:
            continue
        try:
            specs.append(spec_type(name=name, **entry))
        except TypeError as err:
            raise ConfigError(f"{where}.{name}: {err}") from err
    return specs


def source_specs(sources: dict) -> list[SourceSpec]:
    """`data.sources` (name -> mapping) as specs; a source set to null is switched off."""
    specs = named_specs(SourceSpec, sources, "data.sources")
    if not specs:
        raise ConfigError("data.sources is empty: the curate stage needs at least one source")
    return specs


def check_available(spec: SourceSpec) -> None:
    if spec.path is not None and not Path(spec.path).exists():
        raise AssetMissingError(f"data.sources.{spec.name}: {spec.path} is missing: run `make setup`")


def read_rows(spec: SourceSpec) -> Iterator[RawRow]:
    """Every row of one source, capped by `max_records` (malformed rows count towards the cap)."""
    rows = _hub_rows(spec) if spec.hub is not None else _path_rows(spec, Path(spec.path))
    for count, row in enumerate(rows):
        if spec.max_records is not None and count >= spec.max_records:
            break
        yield row


def _path_rows(spec: SourceSpec, path: Path) -> Iterator[RawRow]:
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file():
            yield from _datasets_rows(str(path), _load_from_disk(path))
            return
        for child in sorted(path.iterdir()):
            if child.suffix in (".yml", ".yaml", ".json", ".jsonl", ".gz", ".arrow"):
                yield from _path_rows(spec, child)
        return
    name = path.name
    if name.endswith((".yml", ".yaml")):
        yield from _yaml_rows(path)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        yield from _jsonl_rows(path)
    elif name.endswith(".json"):
        yield from _json_rows(path)
    elif name.endswith(".arrow"):
        from datasets import Dataset

        yield from _datasets_rows(str(path), Dataset.from_file(str(path)))
    else:
        raise ConfigError(f"data.sources.{spec.name}.path={path}: unsupported file type")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _jsonl_rows(path: Path) -> Iterator[RawRow]:
    with _open_text(path) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield RawRow(str(path), number, json.loads(line))
            except json.JSONDecodeError as err:
                yield RawRow(str(path), number, error=f"bad JSON: {err.msg} (column {err.colno})", raw=line[:500])


def _json_rows(path: Path) -> Iterator[RawRow]:
    """Elements of a top-level JSON array (or values of a top-level object), each with its line.

    Elements are decoded one at a time, so a broken element is quarantined with its line and the
    reader skips to the next line that starts an element instead of losing the whole file.
    """
    text = _open_text(path).read()
    decoder = json.JSONDecoder()
    start = _skip_space(text, 0)
    if start >= len(text) or text[start] not in "[{":
        yield RawRow(str(path), 1, error="not a JSON array or object", raw=text[:500])
        return
    is_object, pos = text[start] == "{", start + 1
    line, counted_to = 1, 0  # line numbers are counted incrementally: files can be one huge line
    while True:
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
        if pos >= len(text) or text[pos] in "]}":
            return
        line, counted_to = line + text.count("\n", counted_to, pos), pos
        key = None
        try:
            if is_object:
                key, pos = decoder.raw_decode(text, pos)
                pos = _skip_space(text, pos)
                if text[pos] != ":":
                    raise json.JSONDecodeError("expected ':'", text, pos)
                pos = _skip_space(text, pos + 1)
            value, pos = decoder.raw_decode(text, pos)
            yield RawRow(str(path), line, {"_key": key, **value} if is_object and isinstance(value, dict) else value)
        except (json.JSONDecodeError, IndexError) as err:
            yield RawRow(str(path), line, error=f"bad JSON: {getattr(err, 'msg', err)}", raw=text[pos:pos + 500])
            pos = _resync(text, pos)
            if pos is None:  # nothing after it can be told apart: say so rather than lose it silently
                yield RawRow(str(path), line, error="unreadable from here to the end of the file")
                return


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _resync(text: str, pos: int) -> int | None:
    """Start of the next element after a broken one: the next line indented like the broken element
    and opening a value (or closing the array at a smaller indent)."""
    indent = pos - (text.rfind("\n", 0, pos) + 1)
    nl = text.find("\n", pos)
    while nl != -1:
        window = text[nl + 1: nl + 1 + indent + 1]
        leading = len(window) - len(window.lstrip(" \t"))
        if leading == indent and window[indent:indent + 1] in ("{", "["):
            return nl + 1
        if leading < indent and window[leading:leading + 1] in ("]", "}"):
            return nl + 1
        nl = text.find("\n", nl + 1)
    return None


def _yaml_rows(path: Path) -> Iterator[RawRow]:
    """chatterbot-style YAML: each item of `conversations` with the line it starts on."""
    import yaml

    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        yield RawRow(str(path), (mark.line + 1) if mark else 1, error=f"bad YAML: {err}".splitlines()[0])
        return
    items = None
    if isinstance(root, yaml.MappingNode):
        items = next((v for k, v in root.value if k.value == "conversations"), None)
    if not isinstance(items, yaml.SequenceNode):
        yield RawRow(str(path), 1, error="no `conversations` list")
        return
    for item in items.value:
        line = item.start_mark.line + 1
        if isinstance(item, yaml.SequenceNode) and all(isinstance(v, yaml.ScalarNode) for v in item.value):
            yield RawRow(str(path), line, [v.value for v in item.value])
        else:
            yield RawRow(str(path), line, error="conversation is not a list of strings", raw=str(item)[:500])


def _load_from_disk(path: Path):
    from datasets import load_from_disk

    return load_from_disk(str(path))


def _datasets_rows(where: str, rows) -> Iterator[RawRow]:
    for index, row in enumerate(rows, start=1):
        yield RawRow(where, index, row)


def _hub_rows(spec: SourceSpec) -> Iterator[RawRow]:
    """A hub data set, streamed (nothing is materialised); offline this fails with a clear message."""
    from datasets import load_dataset

    try:
        rows = load_dataset(spec.hub, split=spec.split, streaming=True)
    except Exception as err:  # datasets raises many types for an unreachable/missing hub id
        raise AssetMissingError(f"data.sources.{spec.name}: hub data set '{spec.hub}' could not be loaded "
                                f"(offline here?): {str(err).splitlines()[0]}") from err
    yield from _datasets_rows(f"hub:{spec.hub}", rows)
