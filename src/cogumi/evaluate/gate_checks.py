"""Gate thresholds (conf/gates/*.yaml) checked against metrics: pure logic, no models.

    absolute: [{metric: cogumi_arc_easy/acc_norm, min: 0.25}, {metric: size_mb, max: 600}]
    relative: [{metric: cogumi_arc_easy/acc_norm, max_drop: 0.05},   # vs the reference, same items
               {metric: cogumi_code/pass_at_1, min_gain: 0.0}]

Where per-item scores exist, a relative check compares candidate and reference on the same items
(`cogumi.stats.compare_paired`: exact McNemar for 0/1 scores): `max_drop: x` fails only on a
*significant* drop larger than x, `min_gain: x` passes only on a *significant* gain of at least x,
`max_rise: x` fails only on a significant rise larger than x. An absolute check on a metric with an
interval uses the bound on the safe side (`min` the lower end, `max` the upper end). A metric the run
did not produce fails its check: a gate never passes by omission.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from cogumi.errors import ConfigError
from cogumi.stats import Estimate, PairedComparison

ABSOLUTE_KEYS = {"min", "max"}
RELATIVE_KEYS = {"max_drop", "max_rise", "min_gain"}


@dataclass(frozen=True)
class CheckResult:
    metric: str
    kind: str  # absolute | relative
    bound: str  # e.g. ">= 0.25", "drop <= 0.05"
    value: float | None  # the candidate's estimate
    reference: float | None
    passed: bool
    note: str = ""
    low: float | None = None  # 95% interval: of the value (absolute) or of candidate - reference (relative)
    high: float | None = None
    n: int | None = None  # items behind the interval
    p_value: float | None = None  # paired test (relative checks on per-item scores)
    difference: float | None = None  # candidate - reference

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


def _estimate(value) -> Estimate | None:
    if value is None or isinstance(value, Estimate):
        return value
    return Estimate(**{k: value[k] for k in ("value", "low", "high", "n", "method")})


def check_absolute(check: dict, metrics: dict, estimates: dict | None = None) -> list[CheckResult]:
    metric, value = check["metric"], metrics.get(check["metric"])
    estimate = _estimate((estimates or {}).get(metric))
    results = []
    for key, op in (("min", ">="), ("max", "<=")):
        if key not in check:
            continue
        bound = float(check[key])
        if value is None:
            results.append(CheckResult(metric, "absolute", f"{op} {bound:g}", None, None, False, "metric missing"))
            continue
        if estimate is not None:  # the end of the interval that could break the bound must hold it
            edge = estimate.low if key == "min" else estimate.high
            passed = edge >= bound if key == "min" else edge <= bound
            results.append(CheckResult(metric, "absolute", f"{op} {bound:g}", estimate.value, None, passed,
                                       f"{'lower' if key == 'min' else 'upper'} end {edge:.3f}",
                                       estimate.low, estimate.high, estimate.n))
            continue
        passed = value >= bound if key == "min" else value <= bound
        results.append(CheckResult(metric, "absolute", f"{op} {bound:g}", value, None, passed))
    return results


def _paired_verdict(key: str, bound: float, c: PairedComparison) -> tuple[bool, str]:
    if key == "max_drop":
        failed = c.significant_drop and -c.difference > bound
        return not failed, ("significant drop" if c.significant_drop else "no significant drop")
    if key == "max_rise":
        failed = c.significant_gain and c.difference > bound
        return not failed, ("significant rise" if c.significant_gain else "no significant rise")
    passed = c.significant_gain and c.difference >= bound
    return passed, ("significant gain" if c.significant_gain else "no significant gain")


def check_relative(check: dict, metrics: dict, reference: dict,
                   comparisons: dict[str, PairedComparison] | None = None) -> list[CheckResult]:
    metric = check["metric"]
    value, ref = metrics.get(metric), reference.get(metric)
    comparison = (comparisons or {}).get(metric)
    results = []
    for key, word in (("max_drop", "drop"), ("max_rise", "rise"), ("min_gain", "gain")):
        if key not in check:
            continue
        bound = float(check[key])
        label = f"{word} {'>=' if key == 'min_gain' else '<='} {bound:g}"
        if comparison is not None and comparison.n > 0:
            passed, note = _paired_verdict(key, bound, comparison)
            results.append(CheckResult(metric, "relative", label, comparison.candidate, comparison.reference,
                                       passed, note, comparison.low, comparison.high, comparison.n,
                                       comparison.p_value, comparison.difference))
            continue
        if value is None or ref is None:
            results.append(CheckResult(metric, "relative", label, value, ref, False,
                                       "metric missing" + (" on the reference" if ref is None else "")))
            continue
        if key == "min_gain":  # a gain is a claim about items: without per-item scores it cannot be shown
            results.append(CheckResult(metric, "relative", label, value, ref, False,
                                       "no per-item scores to test a gain", difference=value - ref))
            continue
        change = ref - value if key == "max_drop" else value - ref
        results.append(CheckResult(metric, "relative", label, value, ref, change <= bound,
                                   f"unpaired: {word} {change:+.4g}", difference=value - ref))
    return results


def check_all(gates: dict, metrics: dict, reference: dict | None, estimates: dict | None = None,
              comparisons: dict[str, PairedComparison] | None = None) -> list[CheckResult]:
    """Every check of a gate; `estimates` (intervals of the candidate's metrics) and `comparisons`
    (paired candidate-vs-reference results per metric) make the checks statistical where present."""
    results = []
    for check in gates.get("absolute") or []:
        results += check_absolute(check, metrics, estimates)
    for check in gates.get("relative") or []:
        results += check_relative(check, metrics, reference or {}, comparisons)
    return results


def _fmt(v, signed: bool = False) -> str:
    return "—" if v is None else (f"{v:+.3f}" if signed else f"{v:.4g}")


def results_table(results: list[CheckResult]) -> str:
    """Per check: the estimate, its interval (of the difference for relative checks) and the verdict."""
    lines = ["| metric | check | value | reference | interval (95%) | n | p | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        signed = r.kind == "relative"
        interval = "—" if r.low is None else f"[{_fmt(r.low, signed)}, {_fmt(r.high, signed)}]"
        if signed and r.difference is not None:
            interval = f"Δ {_fmt(r.difference, True)} {interval}" if r.low is not None else f"Δ {_fmt(r.difference, True)}"
        verdict = ("PASS" if r.passed else "FAIL") + (f" ({r.note})" if r.note else "")
        lines.append(f"| {r.metric} | {r.bound} | {_fmt(r.value)} | {_fmt(r.reference)} | {interval} | "
                     f"{_fmt(r.n) if r.n is not None else '—'} | {'—' if r.p_value is None else f'{r.p_value:.3g}'} "
                     f"| {verdict} |")
    return "\n".join(lines) + "\n"
