"""Domain-labelled queries from the shipped sets, split train/val/test by a hash of their text.

The benchmark sets are read through `offline_data` with part `mine` only (the gates' half is never
seen); conversation sets (Alpaca, chit-chat, chatterbot, glaive) are no gate's items. The split of a
query is a function of its normalised text, so a text that occurs twice lands in one split only.
"""

import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

from cogumi.data.normalise import well_formed_records
from cogumi.data.sources import SourceSpec, named_specs
from cogumi.errors import ConfigError
from cogumi.evaluate import offline_data

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
HANDWRITTEN = Path(__file__).with_name("handwritten_queries.jsonl")

# What a user would type, per benchmark row layout (see offline_data's loaders).
_QUERY_FIELD = {"mmlu": "question", "arc_easy": "question", "arc_challenge": "question", "gsm8k": "question",
                "humaneval": "prompt", "mbpp": "text", "bfcl": "question", "truthfulqa": "question"}


@dataclass(frozen=True)
class Query:
    text: str
    domain: str
    source: str  # set name
    split: str


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def split_of(text: str, val_share: float, test_share: float) -> str:
    """Deterministic split from the text alone (identical texts share it)."""
    bucket = int.from_bytes(hashlib.blake2b(normalised(text).encode(), digest_size=8).digest(), "big") / 2**64
    return "test" if bucket < test_share else "val" if bucket < test_share + val_share else "train"


def _benchmark_texts(name: str) -> list[str]:
    rows = offline_data.ROWS[name]()
    return [r[_QUERY_FIELD[name]] for r in offline_data._select(rows, "mine")]


def _conversation_texts(spec: SourceSpec) -> list[str]:
    """The first user message of each conversation (what starts a request)."""
    texts = []
    for raw, record in well_formed_records(spec):
        text = record["instruction"]
        if spec.format == "alpaca" and isinstance(raw.row, dict) and raw.row.get("input"):
            text = f"{text}\n{raw.row['input']}"
        if text.strip():
            texts.append(text)
    return texts


def source_texts(name: str, conversation_sources: dict) -> list[str]:
    if name in _QUERY_FIELD:
        return _benchmark_texts(name)
    specs = {s.name: s for s in named_specs(SourceSpec, conversation_sources, "data.sources")}
    if name not in specs:
        raise ConfigError(f"stage.run.domains names source '{name}': neither an offline benchmark "
                          f"({sorted(_QUERY_FIELD)}) nor one of data.sources ({sorted(specs)})")
    return _conversation_texts(specs[name])


def domain_queries(domains: dict[str, list[str]], conversation_sources: dict, per_domain: int,
                   val_share: float = 0.15, test_share: float = 0.15, seed: int = 0) -> list[Query]:
    """At most `per_domain` queries per domain (all splits together), sources interleaved, deduplicated."""
    rng = random.Random(seed)
    seen, queries = set(), []
    for domain, names in domains.items():
        pools = []
        for name in names:
            texts = [t for t in source_texts(name, conversation_sources) if t.strip()]
            rng.shuffle(texts)
            pools.append([(name, t) for t in texts])
        taken = 0
        # round-robin over the domain's sources so a big set does not crowd out a small one
        for layer in interleave(pools):
            name, text = layer
            key = normalised(text)
            if key in seen:
                continue
            seen.add(key)
            queries.append(Query(text, domain, name, split_of(text, val_share, test_share)))
            taken += 1
            if taken >= per_domain:
                break
        log.info("domain %s: %d queries from %s", domain, taken, names)
    return queries


def interleave(pools: list[list]):
    longest = max((len(p) for p in pools), default=0)
    for i in range(longest):
        for pool in pools:
            if i < len(pool):
                yield pool[i]


def handwritten_queries(path: Path = HANDWRITTEN) -> list[Query]:
    """Queries written for this project, unlike any benchmark's style; never used for training."""
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
                queries.append(Query(row["text"], row["domain"], "handwritten", "handwritten"))
            except (json.JSONDecodeError, KeyError) as err:
                raise ConfigError(f"{path}:{number}: bad hand-written query ({err})") from err
    return queries
