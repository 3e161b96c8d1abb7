"""Training and evaluation turns for the dissatisfaction detector, each with where it came from.

Negatives: user turns of the shipped conversation sets (chit-chat, chatterbot, Alpaca...), split by
text hash, plus satisfied follow-ups assembled from the patterns file. Positives for training:
complaints assembled from `dissatisfaction_patterns.yaml`, each recording the pattern entries it
used. Evaluation: `escalation_eval.jsonl` (hand-written apart from the patterns, both classes;
`written: second` marks the batch written after the patterns' one revision, the first batch having
been looked at then; `third` and `fourth` were each written before the next change to the detector,
HELDOUT.md says how `fourth` is labelled; all four have been looked at and are dev data now) and
`escalation_heldout.jsonl` (batch `fifth`, written before the next change, measured once), plus the
held-out `test` split of the conversation turns (negatives).
"""

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cogumi.data.normalise import well_formed_records
from cogumi.data.sources import SourceSpec, named_specs
from cogumi.errors import ConfigError
from cogumi.router.domain_data import normalised, split_of

PATTERNS = Path(__file__).with_name("dissatisfaction_patterns.yaml")
EVAL_TURNS = Path(__file__).with_name("escalation_eval.jsonl")
HELDOUT_TURNS = Path(__file__).with_name("escalation_heldout.jsonl")


@dataclass(frozen=True)
class Turn:
    text: str
    label: int  # 1 = dissatisfied
    split: str
    source: dict = field(default_factory=dict)


def _complaint(patterns: dict, rng: random.Random) -> tuple[str, dict]:
    """A complaint sentence (fixed or with slots) and the pattern entries it came from."""
    if rng.random() < 0.3:
        s = rng.randrange(len(patterns["structures"]))
        a, b = rng.sample(range(len(patterns["fillers"])), 2)
        text = patterns["structures"][s].format(a=patterns["fillers"][a], b=patterns["fillers"][b])
        return text, {"structure": s, "fillers": [a, b]}
    c = rng.randrange(len(patterns["complaints"]))
    return patterns["complaints"][c], {"complaint": c}


def pattern_positives(count: int, val_share: float, seed: int, path: Path = PATTERNS) -> list[Turn]:
    """`count` distinct complaints; the last `val_share` of them are the validation split."""
    patterns = yaml.safe_load(path.read_text())
    rng = random.Random(seed)
    seen, turns = set(), []
    for _ in range(count * 20):  # distinct texts are plentiful; the bound only stops a tiny pattern file
        if len(turns) >= count:
            break
        o, r = rng.randrange(len(patterns["openers"])), rng.randrange(len(patterns["requests"]))
        complaint, made_of = _complaint(patterns, rng)
        opener, request = patterns["openers"][o], patterns["requests"][r]
        text = f"{opener} {complaint}".strip()
        text = text[0].upper() + text[1:] if rng.random() < 0.5 else text
        if request:
            text += rng.choice([". ", ", ", "! ", " - "]) + request
        text += rng.choice(["", ".", "!", "?", "!!"])
        if normalised(text) in seen:
            continue
        seen.add(normalised(text))
        turns.append(Turn(text, 1, "", {"file": path.name, "opener": o, "request": r, **made_of}))
    cut = int(len(turns) * (1 - val_share))
    return [Turn(t.text, 1, "train" if i < cut else "val", t.source) for i, t in enumerate(turns)]


def pattern_satisfied(count: int, val_share: float, seed: int, path: Path = PATTERNS) -> list[Turn]:
    """`count` distinct satisfied/neutral follow-ups (acknowledgement + optional next request)."""
    patterns = yaml.safe_load(path.read_text())
    rng = random.Random(seed + 1)
    seen, turns = set(), []
    for _ in range(count * 20):
        if len(turns) >= count:
            break
        a, f = rng.randrange(len(patterns["acknowledgements"])), rng.randrange(len(patterns["follow_ups"]))
        text = patterns["acknowledgements"][a] + (rng.choice([", ", ". ", "! "]) + patterns["follow_ups"][f]
                                                  if patterns["follow_ups"][f] else rng.choice(["", "!", "."]))
        text = text[0].upper() + text[1:] if rng.random() < 0.5 else text
        if normalised(text) not in seen:
            seen.add(normalised(text))
            turns.append(Turn(text, 0, "", {"file": path.name, "acknowledgement": a, "follow_up": f}))
    cut = int(len(turns) * (1 - val_share))
    return [Turn(t.text, 0, "train" if i < cut else "val", t.source) for i, t in enumerate(turns)]


def conversation_negatives(names: list[str], sources: dict, per_source: int, val_share: float,
                           test_share: float, seed: int) -> list[Turn]:
    """User turns of the named data.sources, at most `per_source` each, split by text hash."""
    specs = {s.name: s for s in named_specs(SourceSpec, sources, "data.sources")}
    rng = random.Random(seed)
    turns, seen = [], set()
    for name in names:
        if name not in specs:
            raise ConfigError(f"stage.run.negative_sources: '{name}' is not one of data.sources ({sorted(specs)})")
        spec = specs[name]
        found = []
        for _, record in well_formed_records(spec):
            for m in record["messages"]:
                key = normalised(m["content"])
                if m["role"] == "user" and 2 <= len(m["content"]) <= 400 and key not in seen:
                    seen.add(key)
                    found.append(Turn(m["content"], 0, split_of(m["content"], val_share, test_share),
                                      record["metadata"]["source"]))
        rng.shuffle(found)
        turns += found[:per_source]
    return turns


def evaluation_turns(paths: tuple[Path, ...] = (EVAL_TURNS, HELDOUT_TURNS)) -> list[Turn]:
    """The hand-written turns of every batch (the `written` field; the stage splits dev from held-out)."""
    return [turn for path in paths for turn in _written_turns(path)]


def _written_turns(path: Path) -> list[Turn]:
    turns = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
                turns.append(Turn(row["text"], int(row["dissatisfied"]), "eval",
                                  {"file": path.name, "line": number, "written": row.get("written", "first")}))
            except (json.JSONDecodeError, KeyError, ValueError) as err:
                raise ConfigError(f"{path}:{number}: bad evaluation turn ({err})") from err
    return turns
