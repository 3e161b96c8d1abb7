"""The teacher cascade: tiers in order, each given only the items the earlier tiers left unsolved.

An item is solved by a tier when one of its candidate answers passes the domain's verifier; only
such answers are ever kept (the budget `max_records` may keep fewer than were solved). The funnel
records, per tier: attempted, solved, kept, tokens and cost.
"""

import logging
from dataclasses import asdict, dataclass, field

from tqdm.auto import tqdm

from cogumi.teachers.tiers import TierUnavailable

log = logging.getLogger(__name__)


@dataclass
class FunnelRow:
    tier: str
    attempted: int = 0
    solved: int = 0
    kept: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    status: str = "ran"  # ran | unavailable (an optional tier that could not be reached)
    solved_ids: list[str] = field(default_factory=list, repr=False)  # which items it solved (per-cluster funnels)

    def to_dict(self) -> dict:
        row = asdict(self)
        del row["solved_ids"]
        return {**row, "cost_usd": round(self.cost_usd, 6)}


@dataclass(frozen=True)
class KeptAnswer:
    item: object  # DomainItem
    answer: str
    tier: str
    verified: str  # key | form | judge


def run_cascade(items: list, tiers: list, verifier, max_records: int | None = None):
    """(kept answers, funnel rows, items still unsolved) after every tier had its turn."""
    unsolved, kept, funnel = list(items), [], []
    for tier in tiers:
        row = FunnelRow(tier.name)
        funnel.append(row)
        still = []
        for position, item in enumerate(tqdm(unsolved, desc=f"cascade {tier.name}", unit="item")):
            try:
                candidates = tier.answers(item)
            except TierUnavailable as err:
                log.warning("tier %s unavailable (%s): its %d items go on to the next tier",
                            tier.name, err, len(unsolved) - position)
                row.status = "unavailable"
                still += unsolved[position:]
                break
            row.attempted += 1
            row.tokens += candidates.tokens
            row.cost_usd += candidates.cost_usd
            passing = next(((a, c) for a in candidates.answers if (c := verifier.check(item, a)).passed), None)
            if passing is None:
                still.append(item)
                continue
            row.solved += 1
            row.solved_ids.append(item.id)
            if max_records is None or len(kept) < max_records:
                kept.append(KeptAnswer(item, passing[0].strip(), tier.name, passing[1].how))
                row.kept += 1
        unsolved = still
        log.info("tier %s: attempted %d, solved %d, kept %d (%s)", row.tier, row.attempted, row.solved, row.kept,
                 row.status)
    return kept, funnel, unsolved
