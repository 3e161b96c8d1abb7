"""What a pipeline run ends with: an 80-column closing table and `outputs/reports/<run>/report.md`.

One row per step: stage, verdict, true wall time (the step's own process, start to exit) and 2–3
headline figures with their intervals. The report holds every figure of every step's artifact, the
tables and PNGs the stages wrote, the command that reproduces each, and the paired comparison of
the run's suite artifacts (e.g. base vs SFT on the same items).
"""

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.evaluate import estimates
from cogumi.evaluate.harness import PRIMARY
from cogumi.evaluate.suite import item_scores

WIDTH = 80
_FIGURES = 3


@dataclass(frozen=True)
class StepOutcome:
    number: int
    command: str  # what a person types to rerun the step
    exit_code: int
    wall_s: float  # the step's process, start to exit
    gate: bool = False
    artifact: Artifact | None = None
    reused: bool = False  # the step found an up-to-date artifact

    @property
    def stage(self) -> str:
        return self.artifact.stage if self.artifact is not None else self.command.split("stage=")[-1].split()[0]

    @property
    def verdict(self) -> str:
        if self.gate and self.exit_code in (0, 1):
            return "PASS" if self.exit_code == 0 else "FAIL"
        if self.exit_code != 0:
            return f"exit {self.exit_code}"
        return "cached" if self.reused else "ok"


def headline(artifact: Artifact | None, count: int = _FIGURES) -> list[str]:
    """The stage's own headline figures (with intervals), else its first numeric metrics."""
    if artifact is None:
        return []
    chosen = artifact.manifest.get("headline")
    if chosen:
        return [_short(h) for h in chosen[:count]]
    numeric = [(k, v) for k, v in artifact.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [f"{k}={v:.4g}" for k, v in numeric[:count]]


def _short(figure: str) -> str:
    return figure.replace("cogumi_", "")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def closing_table(outcomes: list[StepOutcome], total_s: float) -> str:
    """Plain text at most WIDTH columns wide: a line per step, then its figures on indented lines."""
    lines = [f"{'#':>2} {'stage':<16} {'verdict':<8} {'wall s':>8}", "-" * WIDTH]
    for o in outcomes:
        lines.append(f"{o.number:>2} {_cut(o.stage, 16):<16} {o.verdict:<8} {o.wall_s:>8.1f}")
        lines += [_cut("     " + f, WIDTH) for f in headline(o.artifact)]
    lines += ["-" * WIDTH, f"total {total_s:.0f} s ({total_s / 60:.1f} min)"]
    return "\n".join(lines)


def suite_comparisons(outcomes: list[StepOutcome]) -> list[tuple[Artifact, Artifact, dict]]:
    """(reference, candidate, paired comparisons): the run's first suite against each later one."""
    suites = [o.artifact for o in outcomes if o.artifact is not None and o.artifact.stage == "suite"]
    if len(suites) < 2:
        return []
    reference = item_scores(suites[0])
    return [(suites[0], s, estimates.paired(item_scores(s), reference, PRIMARY)) for s in suites[1:]]


def _model_of(artifact: Artifact) -> str:
    run = artifact.manifest.get("config", {}).get("stage", {}).get("run", {})
    return f"{run.get('model', '?')} ({run.get('kind', '?')})"


def _metrics_block(artifact: Artifact) -> list[str]:
    found = artifact.manifest.get("estimates") or {}
    lines = ["| figure | value | 95% interval | n |", "|---|---|---|---|"]
    for key, e in found.items():
        lines.append(f"| {key} | {e['value']:.4f} | [{e['low']:.4f}, {e['high']:.4f}] | {e['n']} |")
    shown = set(found) | {f"{k}_low" for k in found} | {f"{k}_high" for k in found}
    for key, value in artifact.metrics.items():
        if key not in shown and not key.endswith("/n"):
            lines.append(f"| {key} | {value} | — | — |")
    return lines


def write_report(folder: Path, experiment: str, run_id: str, pipeline_command: str,
                 outcomes: list[StepOutcome], total_s: float) -> Path:
    """`<folder>/report.md` plus copies of the PNGs the steps' artifacts hold."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# Pipeline run `{run_id}` ({experiment})", "",
             f"- finished {datetime.now(timezone.utc).isoformat(timespec='seconds')}, "
             f"{total_s:.0f} s ({total_s / 60:.1f} min) in all",
             f"- reproduce the whole run: `{pipeline_command}` (steps with current artifacts are reused)",
             f"- W&B group: `{run_id}`", "", "## Steps", "", "```", closing_table(outcomes, total_s), "```", ""]
    comparisons = suite_comparisons(outcomes)
    if comparisons:
        lines += ["## Paired comparisons of the suite runs (same items)", ""]
        for reference, candidate, found in comparisons:
            lines += [f"{_model_of(candidate)} vs {_model_of(reference)} — `{candidate.ref}` vs `{reference.ref}`", "",
                      "| figure | candidate | reference | difference [95%] | p | n | verdict |",
                      "|---|---|---|---|---|---|---|"]
            for key, c in found.items():
                verdict = ("significant gain" if c.significant_gain else
                           "significant drop" if c.significant_drop else "no significant difference")
                lines.append(f"| {key} | {c.candidate:.3f} | {c.reference:.3f} | {c.difference:+.3f} "
                             f"[{c.low:+.3f}, {c.high:+.3f}] | {c.p_value:.3g} | {c.n} | {verdict} |")
            lines.append("")
    for o in outcomes:
        lines += [f"## {o.number}. {o.stage} — {o.verdict}, {o.wall_s:.1f} s", "", f"Reproduce: `{o.command}`", ""]
        if o.artifact is None:
            continue
        lines += [f"Artifact: `{o.artifact.path}`" + (" (reused: inputs and config unchanged)" if o.reused else ""),
                  ""] + _metrics_block(o.artifact) + [""]
        for table in ("table.md",):
            if (o.artifact.path / table).is_file():
                lines += [(o.artifact.path / table).read_text(), ""]
        for png in sorted(o.artifact.path.rglob("*.png")):
            copy = folder / f"{o.number:02d}-{o.stage}-{png.name}"
            shutil.copyfile(png, copy)
            lines += [f"![{o.stage}: {png.name}]({copy.name})", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
