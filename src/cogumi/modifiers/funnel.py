"""The cascade's funnel as a markdown table and a PNG: per tier, attempted / solved / kept, tokens, cost."""

from pathlib import Path


def funnel_table(rows: list[dict]) -> str:
    lines = ["| tier | status | attempted | solved | kept | tokens | cost (USD) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tier']} | {r['status']} | {r['attempted']} | {r['solved']} | {r['kept']} | "
                     f"{r['tokens']} | {r['cost_usd']:.4f} |")
    return "\n".join(lines) + "\n"


def plot_funnel(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(1.6 * len(rows) + 2.5, 3.5))
    width = 0.27
    for offset, key, color in ((-width, "attempted", "#9aa5b1"), (0, "solved", "#4c78a8"), (width, "kept", "#54a24b")):
        xs = [i + offset for i in range(len(rows))]
        bars = axes.bar(xs, [r[key] for r in rows], width, label=key, color=color)
        axes.bar_label(bars, fontsize=7)
    axes.set_xticks(range(len(rows)), [f"{r['tier']}\n{r['tokens']} tok, ${r['cost_usd']:.3f}" for r in rows],
                    fontsize=8)
    axes.set_ylabel("items")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
