"""Training examples: dataset records → chat-template tokens with a response-only loss mask → packed rows.

The chat template is always the tokenizer's own. Which tokens are the assistant's is found by
rendering the conversation twice per assistant turn — up to the generation prompt, and with the
reply — and taking the difference; no template text is hard-coded, so Llama 3, ChatML, Gemma ...
all work as long as rendering a longer conversation extends the shorter one (checked).
"""

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.errors import CogumiError, ConfigError

log = logging.getLogger(__name__)

IGNORE = -100  # label of tokens the loss skips (prompt, template scaffolding, padding)


class TemplateError(CogumiError):
    """The tokenizer's chat template does not render conversations prefix-consistently."""


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE outside assistant replies

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass
class PackedRow:
    """Several examples in one row; position ids restart at 0 for each, which keeps attention apart."""

    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    real_tokens: int = 0  # tokens of examples (padding excluded)

    def add(self, example: Example) -> None:
        self.input_ids += example.input_ids
        # The first token of an example never has a target: it would be predicted from the previous one.
        self.labels += [IGNORE] + example.labels[1:]
        self.position_ids += list(range(len(example.input_ids)))
        self.real_tokens += len(example.input_ids)


def read_records(path: Path) -> list[dict]:
    """A dataset artifact's jsonl file (schema: id, instruction, response, messages?, metadata)."""
    if not path.is_file():
        raise ConfigError(f"dataset file {path} does not exist")
    records = []
    with path.open() as handle:
        for line_number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ConfigError(f"{path}:{line_number}: not JSON ({err})") from err
    return records


def record_messages(record: dict) -> list[dict]:
    """`messages` when present (multi-turn, authoritative), else one user/assistant exchange."""
    if record.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if "instruction" not in record or "response" not in record:
        raise ConfigError(f"record {record.get('id', '?')}: needs `messages` or `instruction` + `response`")
    return [{"role": "user", "content": record["instruction"]}, {"role": "assistant", "content": record["response"]}]


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode_conversation(tokenizer, messages: list[dict], max_len: int) -> Example | None:
    """Tokens of the rendered conversation; labels only on assistant replies (with their end-of-turn).

    Segments are tokenized separately at prompt/reply boundaries — as at inference time, when the
    prompt is tokenized and the reply is generated after it. Returns None when truncation to
    `max_len` leaves no reply token to learn from.
    """
    input_ids, labels, rendered = [], [], ""
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:turn], generation_prompt=True)
        full = _render(tokenizer, messages[:turn + 1], generation_prompt=False)
        if not prompt.startswith(rendered) or not full.startswith(prompt):
            raise TemplateError("the chat template does not render a conversation as an extension of its prefix; "
                                "cannot tell reply tokens from prompt tokens")
        context = tokenizer(prompt[len(rendered):], add_special_tokens=False)["input_ids"]
        reply = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        input_ids += context + reply
        labels += [IGNORE] * len(context) + reply
        rendered = full
    example = Example(input_ids[:max_len], labels[:max_len])
    return example if example.trained_tokens > 0 else None


def encode_records(tokenizer, records: list[dict], max_len: int) -> list[Example]:
    examples = [encode_conversation(tokenizer, record_messages(r), max_len) for r in records]
    kept = [e for e in examples if e is not None]
    if len(kept) < len(examples):
        log.info("dropped %d of %d records with no reply token within %d tokens", len(examples) - len(kept),
                 len(examples), max_len)
    return kept


def pack_examples(examples: list[Example], seq_len: int, seed: int) -> list[PackedRow]:
    """First-fit packing of shuffled examples into rows of at most `seq_len` tokens (deterministic)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    rows: list[PackedRow] = []
    space: list[int] = []
    for index in order:
        example = examples[index]
        size = len(example.input_ids)
        slot = next((i for i, free in enumerate(space) if free >= size), None)
        if slot is None:
            rows.append(PackedRow())
            space.append(seq_len)
            slot = len(rows) - 1
        rows[slot].add(example)
        space[slot] -= size
    return rows


def unpacked_rows(examples: list[Example]) -> list[PackedRow]:
    """One example per row (packing off, and the baseline the benchmark compares against)."""
    rows = []
    for example in examples:
        row = PackedRow()
        row.add(example)
        rows.append(row)
    return rows
