"""What the curate stage counts, and its report: `report.json` and `distributions.png`.

Every row read ends in exactly one place: kept, removed by one named filter, or quarantined, so
`rows_in == kept + sum(removed.values()) + quarantined` (checked before the report is written).
"""

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.errors import CogumiError

FILTER_ORDER = ("schema", "language", "pii", "offensive", "length", "quality", "decontamination",
                "exact_duplicate", "near_duplicate", "mix_cap")


@dataclass
class CurationReport:
    rows_in: int = 0
    quarantined: int = 0
    removed: Counter = field(default_factory=Counter)
    per_source: dict = field(default_factory=lambda: defaultdict(Counter))  # source -> in/kept/quarantined/...
    languages: Counter = field(default_factory=Counter)
    language_uncertain: int = 0
    decontamination: dict = field(default_factory=dict)
    decontamination_examples: list = field(default_factory=list)
    removal_examples: dict = field(default_factory=lambda: defaultdict(list))
    kept_tokens: list = field(default_factory=list)
    kept_quality: list = field(default_factory=list)
    domains: Counter = field(default_factory=Counter)
    difficulty: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    extra: dict = field(default_factory=dict)

    def remove(self, source: str, reason: str, record_id: str, detail: str = "") -> None:
        self.removed[reason] += 1
        self.per_source[source][f"removed_{reason}"] += 1
        if len(self.removal_examples[reason]) < 5:
            self.removal_examples[reason].append({"id": record_id, "detail": detail})

    def keep(self, record: dict, split: str) -> None:
        meta = record["metadata"]
        self.per_source[meta["source"]["name"]]["kept"] += 1
        self.kept_tokens.append(meta["tokens"])
        self.kept_quality.append(meta["quality_score"])
        self.domains[meta["domain"]] += 1
        self.difficulty[meta["difficulty"]] += 1
        self.splits[split] += 1

    @property
    def kept(self) -> int:
        return sum(self.splits.values())

    def as_dict(self) -> dict:
        removed_total = sum(self.removed.values())
        if self.rows_in != self.kept + removed_total + self.quarantined:
            raise CogumiError(f"curation counts do not add up: in={self.rows_in} kept={self.kept} "
                              f"removed={removed_total} quarantined={self.quarantined}")
        checked = sum(self.languages.values())
        return {
            "rows_in": self.rows_in,
            "kept": self.kept,
            "quarantined": self.quarantined,
            "removed": {k: self.removed.get(k, 0) for k in FILTER_ORDER},
            "removed_total": removed_total,
            "splits": dict(self.splits),
            "per_source": {k: dict(v) for k, v in self.per_source.items()},
            "language_share": {k: round(v / checked, 4) for k, v in self.languages.most_common()} if checked else {},
            "language_uncertain": self.language_uncertain,
            "decontamination": self.decontamination,
            "decontamination_examples": self.decontamination_examples,
            "removal_examples": dict(self.removal_examples),
            "domains": dict(self.domains.most_common()),
            "difficulty": dict(self.difficulty.most_common()),
            "tokens": _summary(self.kept_tokens),
            "quality_score": _summary(self.kept_quality),
            **self.extra,
        }

    def write(self, folder: Path) -> dict:
        data = self.as_dict()
        (folder / "report.json").write_text(json.dumps(data, indent=2))
        self.plot(folder / "distributions.png", data)
        return data

    def plot(self, path: Path, data: dict) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 3, figsize=(15, 8))
        axes[0, 0].hist(self.kept_tokens or [0], bins=40, color="tab:blue")
        axes[0, 0].set(title="tokens per kept record (student tokenizer)", xlabel="tokens")
        axes[0, 1].hist(self.kept_quality or [0], bins=20, color="tab:green")
        axes[0, 1].set(title="quality score (0-10) of kept records", xlabel="score")
        _bars(axes[0, 2], data["removed"] | {"quarantined": self.quarantined}, "removed per filter")
        _bars(axes[1, 0], data["domains"], "domain")
        _bars(axes[1, 1], data["difficulty"], "difficulty")
        _bars(axes[1, 2], dict(list(data["language_share"].items())[:8]), "language share (before filtering)")
        fig.suptitle(f"curate: {data['rows_in']} in, {data['kept']} kept, {data['removed_total']} removed, "
                     f"{data['quarantined']} quarantined")
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)


def _bars(ax, counts: dict, title: str) -> None:
    ax.bar(list(counts), list(counts.values()), color="tab:orange")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)


def _summary(values: list) -> dict:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"count": len(ordered), "min": ordered[0], "p50": pick(0.5), "p90": pick(0.9), "max": ordered[-1],
            "mean": round(sum(ordered) / len(ordered), 2)}
