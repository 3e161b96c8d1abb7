"""Gate thresholds (conf/gates/*.yaml) checked against metrics: pure logic, no models.

    absolute: [{metric: cogumi_arc_easy/acc_norm, min: 0.25}, {metric: size_mb, max: 600}]
    relative: [{metric: cogumi_arc_easy/acc_norm, max_drop: 0.05}]   # vs the reference's value

A metric the run did not produce fails its check: a gate never passes by omission.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from cogumi.errors import ConfigError

ABSOLUTE_KEYS = {"min", "max"}
RELATIVE_KEYS = {"max_drop", "max_rise"}


@dataclass(frozen=True)
class CheckResult:
    metric: str
    kind: str  # absolute | relative
    bound: str  # e.g. ">= 0.25", "drop <= 0.05"
    value: float | None
    reference: float | None
    passed: bool
    note: str = ""

    def row(self) -> dict:
        return asdict(self)


def validate(gates: dict, where: str = "gates") -> None:
    for kind, allowed in (("absolute", ABSOLUTE_KEYS), ("relative", RELATIVE_KEYS)):
        for i, check in enumerate(gates.get(kind) or []):
            if not isinstance(check, Mapping) or "metric" not in check:
                raise ConfigError(f"{where}.{kind}[{i}]={check!r}: expected {{metric: ..., {'|'.join(sorted(allowed))}: ...}}")
            bounds = set(check) - {"metric"}
            if not bounds or bounds - allowed:
                raise ConfigError(f"{where}.{kind}[{i}] ({check['metric']}): bounds {sorted(bounds)}; "
                                  f"allowed: {sorted(allowed)}")
    if (gates.get("relative") or []) and not gates.get("reference"):
        raise ConfigError(f"{where}.relative needs {where}.reference (an artifact ref or `base`)")


def needed_metrics(gates: dict) -> set[str]:
    return {c["metric"] for kind in ("absolute", "relative") for c in gates.get(kind) or []}


def check_absolute(check: dict, metrics: dict) -> list[CheckResult]:
    metric, value = check["metric"], metrics.get(check["metric"])
    results = []
    for key, op in (("min", ">="), ("max", "<=")):
        if key not in check:
            continue
        bound = float(check[key])
        if value is None:
            results.append(CheckResult(metric, "absolute", f"{op} {bound:g}", None, None, False, "metric missing"))
            continue
        passed = value >= bound if key == "min" else value <= bound
        results.append(CheckResult(metric, "absolute", f"{op} {bound:g}", value, None, passed))
    return results


def check_relative(check: dict, metrics: dict, reference: dict) -> list[CheckResult]:
    metric = check["metric"]
    value, ref = metrics.get(metric), reference.get(metric)
    results = []
    for key, word in (("max_drop", "drop"), ("max_rise", "rise")):
        if key not in check:
            continue
        bound = float(check[key])
        if value is None or ref is None:
            results.append(CheckResult(metric, "relative", f"{word} <= {bound:g}", value, ref, False,
                                       "metric missing" + (" on the reference" if ref is None else "")))
            continue
        change = ref - value if key == "max_drop" else value - ref
        results.append(CheckResult(metric, "relative", f"{word} <= {bound:g}", value, ref, change <= bound,
                                   f"{word} {change:+.4g}"))
    return results


def check_all(gates: dict, metrics: dict, reference: dict | None) -> list[CheckResult]:
    results = []
    for check in gates.get("absolute") or []:
        results += check_absolute(check, metrics)
    for check in gates.get("relative") or []:
        results += check_relative(check, metrics, reference or {})
    return results


def results_table(results: list[CheckResult]) -> str:
    lines = ["| metric | check | value | reference | result |", "|---|---|---|---|---|"]
    for r in results:
        fmt = lambda v: "—" if v is None else f"{v:.4g}"  # noqa: E731
        verdict = "PASS" if r.passed else "FAIL" + (f" ({r.note})" if r.note else "")
        lines.append(f"| {r.metric} | {r.bound} | {fmt(r.value)} | {fmt(r.reference)} | {verdict} |")
    return "\n".join(lines) + "\n"
