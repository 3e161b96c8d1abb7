"""Decontamination: drop training items that share word n-grams with an item of a gate's evaluation set.

An evaluation item with k distinct n-grams contaminates a training item that contains at least
`min_overlap * k` of them (a paraphrased copy still matches; one shared stock phrase does not).
Evaluation items shorter than n words cannot be checked this way; they are counted as `unchecked`.
"""

import gzip
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cogumi.errors import AssetMissingError, ConfigError
from cogumi.data.sources import named_specs

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: str  # JSONL(.gz) / JSON-lines `.json` file, a folder of them (`glob`), or a save_to_disk folder
    field: str  # dotted path inside each row; every string under it is taken (lists are walked)
    glob: str = "*"


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _field(row, dotted: str):
    for part in dotted.split("."):
        if isinstance(row, list) and part.isdigit() and int(part) < len(row):
            row = row[int(part)]
        elif isinstance(row, dict) and part in row:
            row = row[part]
        else:
            return None
    return row


def _rows(path: Path, pattern: str):
    if path.is_dir() and (path / "state.json").is_file():
        from datasets import load_from_disk

        yield from load_from_disk(str(path))
    elif path.is_dir():
        for child in sorted(path.glob(pattern)):
            if child.is_file():
                yield from _rows(child, pattern)
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            text = handle.read()
        try:  # one JSON document (array or object) ...
            whole = json.loads(text)
            yield from whole if isinstance(whole, list) else [whole]
        except json.JSONDecodeError:  # ... or JSON lines (BFCL's `.json` files are JSONL)
            yield from (json.loads(line) for line in text.splitlines() if line.strip())


def eval_texts(spec: EvalSet) -> list[str]:
    """Distinct texts of one evaluation set (request files repeat a document once per choice)."""
    path = Path(spec.path)
    if not path.exists():
        raise AssetMissingError(f"decontamination set '{spec.name}': {path} is missing: run `make setup`")
    texts = {}
    for row in _rows(path, spec.glob):
        text = "\n".join(_strings(_field(row, spec.field)))
        if text.strip():
            texts.setdefault(text, None)
    if not texts:
        raise ConfigError(f"decontamination set '{spec.name}': field '{spec.field}' found no text in {path}")
    return list(texts)


def ngrams(text: str, n: int) -> set[int]:
    words = _WORD.findall(text.lower())
    return {hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)}


class ContaminationIndex:
    """n-gram -> evaluation item, over every configured gate set."""

    def __init__(self, sets: list[EvalSet], n: int, min_overlap: float):
        if n < 3 or not 0 < min_overlap <= 1:
            raise ConfigError(f"decontaminate: ngram={n} must be >= 3 and min_overlap={min_overlap} in (0, 1]")
        self.n, self.min_overlap = n, min_overlap
        self.owner: dict[int, int] = {}
        self.items: list[tuple[str, str, int]] = []  # (set name, text head, number of n-grams)
        self.stats = {}
        for spec in sets:
            texts = eval_texts(spec)
            unchecked = 0
            for text in texts:
                grams = ngrams(text, n)
                if not grams:
                    unchecked += 1
                    continue
                item = len(self.items)
                self.items.append((spec.name, text[:160], len(grams)))
                for g in grams:
                    self.owner.setdefault(g, item)
            self.stats[spec.name] = {"items": len(texts), "unchecked_short": unchecked, "removed": 0}
            log.info("decontamination set %s: %d items (%d shorter than %d words)", spec.name, len(texts),
                     unchecked, n)

    def match(self, text: str) -> tuple[str, str] | None:
        """(set name, evaluation text head) of the evaluation item the text overlaps, if any."""
        hits = Counter(self.owner[g] for g in ngrams(text, self.n) if g in self.owner)
        for item, count in hits.most_common():
            name, head, total = self.items[item]
            if count >= self.min_overlap * total:
                return name, head
        return None


def eval_sets(sets: dict) -> list[EvalSet]:
    return named_specs(EvalSet, sets, "stage.run.decontaminate.sets")
