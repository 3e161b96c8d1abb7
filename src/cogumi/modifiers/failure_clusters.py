"""The cascade's unsolved-by-the-student items as clusters, and the cascade's funnel per cluster.

Clustering is evaluate/clustering's (all-MiniLM-L6-v2 embeddings, KMeans with k by silhouette, TF-IDF
names), run on each item's question (not the task's shared instructions, which would dominate the
embedding). A cluster records its size, a few example questions, which tier solved how many of its
items, how many stayed unsolved and, when augmentation ran, what it asked for and kept.
"""

from dataclasses import dataclass

import numpy as np

from cogumi.evaluate import clustering

EXAMPLE_CHARS = 160


@dataclass
class FailureCluster:
    id: int
    name: str  # TF-IDF terms of its questions
    items: list  # DomainItem


def cluster_failures(items: list, k_min: int = 2, k_max: int = 8, seed: int = 0,
                     embed=clustering.embed) -> tuple[list[FailureCluster], dict]:
    """(clusters, silhouette per k tried); fewer than 4 items make one cluster (no split is measurable)."""
    if not items:
        return [], {}
    texts = [item.topic for item in items]
    if len(items) < 4:
        return [FailureCluster(0, _names(texts, np.zeros(len(items), dtype=int))[0], list(items))], {}
    vectors = embed(texts)
    k, silhouettes = clustering.choose_k(vectors, k_min, k_max, seed)
    labels = clustering.cluster(vectors, k, seed)
    names = _names(texts, labels)
    clusters = [FailureCluster(int(c), names[c], [item for item, label in zip(items, labels) if label == c])
                for c in sorted(set(labels.tolist()))]
    return sorted(clusters, key=lambda c: -len(c.items)), {str(k): round(v, 4) for k, v in silhouettes.items()}


def _names(texts: list[str], labels: np.ndarray) -> dict[int, str]:
    try:
        return clustering.tfidf_labels(texts, labels)
    except ValueError:  # no term survives the stop words (tiny or numeric questions)
        return {int(c): f"cluster {c}" for c in set(labels.tolist())}


def cluster_funnel(clusters: list[FailureCluster], funnel: list, unsolved: list, augmented: dict | None = None,
                   examples: int = 3) -> list[dict]:
    """One row per cluster: its items, solved per tier (FunnelRow.solved_ids), unsolved, augmentation."""
    solved_by = {item_id: row.tier for row in funnel for item_id in row.solved_ids}
    still = {item.id for item in unsolved}
    rows = []
    for c in clusters:
        ids = [item.id for item in c.items]
        row = {"cluster": c.id, "name": c.name, "items": len(ids),
               "examples": [item.topic[:EXAMPLE_CHARS] for item in c.items[:examples]],
               "solved": {r.tier: sum(solved_by.get(i) == r.tier for i in ids) for r in funnel},
               "unsolved": sum(i in still for i in ids), "item_ids": ids}
        if augmented is not None and c.id in augmented:
            row["augment"] = augmented[c.id]
        rows.append(row)
    return rows


def cluster_table(rows: list[dict]) -> str:
    """Markdown: one line per cluster, the tiers' solved counts, unsolved, augmentation kept/asked, an example."""
    tiers = list(rows[0]["solved"]) if rows else []
    head = ["cluster", "name", "items", *[f"{t} solved" for t in tiers], "unsolved", "augmented kept/asked",
            "example"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        aug = r.get("augment")
        cells = [str(r["cluster"]), r["name"], str(r["items"]), *[str(r["solved"][t]) for t in tiers],
                 str(r["unsolved"]), f"{aug['kept']}/{aug['asked']}" if aug else "-",
                 (r["examples"][0] if r["examples"] else "").replace("|", "/").replace("\n", " ")[:80]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
