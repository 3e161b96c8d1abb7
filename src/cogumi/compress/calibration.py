"""Calibration text for pruning and quantization: the curated dataset when there is one, else shipped C4.

Calibration never uses the held-out perplexity text (data.heldout_text), so fidelity numbers stay honest.
"""

import json
import logging
import random
from pathlib import Path

from cogumi.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)


def _chat_texts(train_jsonl: Path, tokenizer) -> list[str]:
    """Dataset records rendered by the tokenizer's own chat template (messages authoritative when present)."""
    texts = []
    for line in train_jsonl.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        messages = record.get("messages") or [{"role": "user", "content": record["instruction"]},
                                               {"role": "assistant", "content": record["response"]}]
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
    return texts


def calibration_source(store, dataset_ref: str | None, fallback_file: str):
    """(input identity for the manifest, description): the dataset artifact if it resolves, else the file."""
    if dataset_ref:
        try:
            artifact = store.resolve(dataset_ref)
            if artifact.file("train.jsonl").is_file():
                return artifact
            log.warning("%s has no train.jsonl; calibrating on %s", artifact.ref, fallback_file)
        except ArtifactError as err:
            log.warning("calibration dataset %s unavailable (%s); calibrating on %s", dataset_ref, err, fallback_file)
    return fallback_file


def calibration_dataset(source, tokenizer, samples: int, max_seq_length: int, seed: int, pack: bool = False):
    """A `datasets.Dataset` of `samples` tokenized texts (input_ids, attention_mask), shuffled by seed.

    With `pack`, the shuffled texts are concatenated and cut into rows of exactly `max_seq_length`
    tokens, so the budget is `samples × max_seq_length` tokens; without it each row is one text,
    truncated (short chat records leave most of the budget unused: 8 × 128 gave 841 tokens).
    """
    from datasets import Dataset

    from cogumi.data.text import read_documents

    if samples < 1 or max_seq_length < 8:
        raise ConfigError(f"stage.run.calibration_samples={samples}, max_seq_length={max_seq_length}: "
                          "need at least 1 sample of 8 tokens")
    if isinstance(source, (str, Path)):
        texts = read_documents(source)
    else:
        texts = _chat_texts(source.file("train.jsonl"), tokenizer)
    random.Random(seed).shuffle(texts)
    if pack:
        return _packed(texts, tokenizer, samples, max_seq_length, source)
    rows = [tokenizer(t, add_special_tokens=False, truncation=True, max_length=max_seq_length) for t in texts]
    rows = [r for r in rows if len(r["input_ids"]) >= 8][:samples]
    if not rows:
        raise ConfigError(f"calibration source {source}: no text of at least 8 tokens")
    return Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows],
                              "attention_mask": [r["attention_mask"] for r in rows]})


def _packed(texts: list[str], tokenizer, samples: int, max_seq_length: int, source):
    from datasets import Dataset

    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= samples * max_seq_length:
            break
    rows = [ids[i:i + max_seq_length] for i in range(0, samples * max_seq_length, max_seq_length)]
    rows = [r for r in rows if len(r) == max_seq_length]
    if not rows:
        raise ConfigError(f"calibration source {source}: fewer than {max_seq_length} tokens in all")
    return Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows]})
