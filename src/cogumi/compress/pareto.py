"""Quality-vs-size Pareto fronts of sweeps: table, PNG with the front marked, and the knee pick.

`ParetoReport` is a Hydra callback: a sweep preset registers it under `hydra.callbacks`, and when
the multirun ends it reads the trials of *this* sweep (each job's `trial.json`, written by
`entry.run_stage`; a cached trial counts too) and writes `pareto.md`, `pareto.json` and `pareto.png`
into the sweep folder. The sweeps are multi-objective (quality and size, one Optuna `direction`
each), so the front marked is Optuna's own `study.best_trials` (its `optimization_results.yaml`);
the report only draws it and picks the knee.
"""

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from cogumi.entry import TRIAL_RECORD

log = logging.getLogger(__name__)


@dataclass
class Point:
    label: str
    size: float
    quality: float  # lower is better (KL, perplexity)
    artifact: str
    on_front: bool = False
    knee: bool = False


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both size and quality (both minimised), sorted by size."""
    front = [p for p in points
             if not any(q.size <= p.size and q.quality <= p.quality and (q.size, q.quality) != (p.size, p.quality)
                        for q in points)]
    return sorted(front, key=lambda p: (p.size, p.quality))


def knee(front: list[Point]) -> Point | None:
    """The front point farthest from the line joining its two ends, on axes scaled to [0, 1].

    The seeds' "Pareto optimal" pick: past the knee, each saved megabyte costs more quality
    than before it. With fewer than three points there is no bend; the smallest point is taken.
    """
    if not front:
        return None
    if len(front) < 3:
        return front[0]
    sizes, qualities = [p.size for p in front], [p.quality for p in front]
    s0, s1, q0, q1 = min(sizes), max(sizes), min(qualities), max(qualities)
    scaled = [((p.size - s0) / ((s1 - s0) or 1), (p.quality - q0) / ((q1 - q0) or 1)) for p in front]
    (xa, ya), (xb, yb) = scaled[0], scaled[-1]
    norm = ((xb - xa) ** 2 + (yb - ya) ** 2) ** 0.5 or 1.0
    distances = [abs((yb - ya) * x - (xb - xa) * y + xb * ya - yb * xa) / norm for x, y in scaled]
    return front[max(range(len(front)), key=distances.__getitem__)]


def analyse(points: list[Point], front_values: set[tuple[float, float]] | None = None) -> list[Point]:
    """Mark the front (Optuna's, as (quality, size) pairs, when given) and the knee on it."""
    if front_values is None:
        front = pareto_front(points)
    else:
        front = sorted((p for p in points if (p.quality, p.size) in front_values), key=lambda p: (p.size, p.quality))
    for p in front:
        p.on_front = True
    if (picked := knee(front)) is not None:
        picked.knee = True
    return sorted(points, key=lambda p: (p.size, p.quality))


def write_report(points: list[Point], folder: Path, size_name: str, quality_name: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"| {p.label} | {p.size:.3f} | {p.quality:.5f} | {'yes' if p.on_front else ''} | "
            f"{'**knee**' if p.knee else ''} |" for p in points]
    table = "\n".join([f"# {title}", "", f"| trial | {size_name} | {quality_name} | Pareto front | pick |",
                       "|---|---|---|---|---|", *rows, ""])
    (folder / "pareto.md").write_text(table)
    (folder / "pareto.json").write_text(json.dumps([asdict(p) for p in points], indent=2))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([p.size for p in points], [p.quality for p in points], c="lightgray", label="trial")
    front = [p for p in points if p.on_front]
    ax.plot([p.size for p in front], [p.quality for p in front], "o-", c="tab:blue", label="Pareto front")
    for p in front:
        ax.annotate(p.label, (p.size, p.quality), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for p in (p for p in points if p.knee):
        ax.scatter([p.size], [p.quality], s=160, facecolors="none", edgecolors="tab:red", label=f"knee: {p.label}")
    ax.set_xlabel(size_name)
    ax.set_ylabel(f"{quality_name} (lower is better)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "pareto.png", dpi=120)
    plt.close(fig)
    log.info("Pareto report in %s\n%s", folder, table)
    return folder / "pareto.md"


def _short(value) -> str:
    """A label value as people read it: Optuna's 0.6866326313119496 is 0.687."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class ParetoReport(Callback):
    """Hydra callback: Pareto report of a sweep's trials when the multirun ends."""

    def __init__(self, stage: str, size_metric: str, quality_metric: str, label_keys: list[str], title: str = ""):
        self.stage, self.size_metric, self.quality_metric = stage, size_metric, quality_metric
        self.label_keys, self.title = list(label_keys), title or f"{stage}: {quality_metric} vs {size_metric}"

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        points = []
        for record_path in sorted(sweep_dir.glob(f"*/{TRIAL_RECORD}")):
            record = json.loads(record_path.read_text())
            metrics = record["metrics"]
            if self.size_metric not in metrics or self.quality_metric not in metrics:
                continue
            job_cfg = OmegaConf.load(record_path.parent / ".hydra" / "config.yaml")
            values = [_plain(OmegaConf.select(job_cfg, k)) for k in self.label_keys]
            label = " ".join(",".join(map(_short, v)) if isinstance(v, list) else _short(v) for v in values)
            points.append(Point(label, metrics[self.size_metric], metrics[self.quality_metric], record["artifact"]))
        if not points:
            log.warning("no trial of %s has %s and %s: no Pareto report", sweep_dir, self.size_metric,
                        self.quality_metric)
            return
        write_report(analyse(points, self._optuna_front(sweep_dir)), sweep_dir, self.size_metric,
                     self.quality_metric, self.title)

    def _optuna_front(self, sweep_dir: Path) -> set[tuple[float, float]] | None:
        """(quality, size) of Optuna's best_trials, when the sweep optimised exactly those two objectives."""
        results = sweep_dir / "optimization_results.yaml"
        if not results.is_file():
            return None
        solutions = OmegaConf.to_container(OmegaConf.load(results)).get("solutions")
        if not solutions or any(len(s["values"]) != 2 for s in solutions):
            return None  # a single-objective study: the front is computed from the trials
        return {(float(s["values"][0]), float(s["values"][1])) for s in solutions}
