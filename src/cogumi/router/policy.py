"""The routing policy: which of base, base + the domain's modifier, or the teacher answers a query.

balanced: the base answers first; when its calibrated confidence is below the threshold, the query
goes to the domain's promoted modifier, else to the teacher when one is configured, else stays with
the base (reason "no modifier for <domain>"). speed: base only. quality: the modifier whenever the
domain has one (else the teacher, else the base). Never raises for a domain without a modifier.
"""

from dataclasses import asdict, dataclass, field

from cogumi.errors import ConfigError

MODES = ("speed", "balanced", "quality")
ROUTES = ("base", "modifier", "teacher")
UNKNOWN_DOMAIN = "unknown"


@dataclass(frozen=True)
class DomainPrediction:
    domain: str  # UNKNOWN_DOMAIN when no domain is probable enough
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RouterDecision:
    route: str  # base | modifier | teacher
    domain: str
    probabilities: dict[str, float]
    confidence: float | None
    adapter: str | None  # the domain whose modifier to apply (route == modifier)
    threshold: float
    mode: str
    reason: str
    decided_by: str = "router"  # router | mode | escalation
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"routing mode {mode!r}: expected one of {MODES}")
    return mode


def _fallback(prediction: DomainPrediction, modifiers, teacher_available: bool, why: str):
    """(route, adapter, reason) once the base is not trusted: modifier, else teacher, else base."""
    if prediction.domain in modifiers:
        return "modifier", prediction.domain, f"{why}; {prediction.domain} modifier"
    if teacher_available:
        return "teacher", None, f"{why}; no modifier for {prediction.domain}, teacher"
    return "base", None, f"{why}; no modifier for {prediction.domain}, no teacher"


def decide(prediction: DomainPrediction, *, threshold: float, mode: str = "balanced",
           confidence: float | None = None, modifiers=frozenset(), teacher_available: bool = False) -> RouterDecision:
    check_mode(mode)
    modifiers = set(modifiers)

    def made(route, adapter, reason, decided_by="router"):
        return RouterDecision(route, prediction.domain, prediction.probabilities, confidence, adapter,
                              threshold, mode, reason, decided_by)

    if mode == "speed":
        return made("base", None, "speed mode: base only", "mode")
    if mode == "quality":
        return made(*_fallback(prediction, modifiers, teacher_available, "quality mode"), "mode")
    if confidence is None:
        return made("base", None, "awaiting confidence: the base answers first")
    if confidence >= threshold:
        return made("base", None, f"confidence {confidence:.3f} >= threshold {threshold:.3f}")
    return made(*_fallback(prediction, modifiers, teacher_available,
                           f"confidence {confidence:.3f} < threshold {threshold:.3f}"))


def escalate(decision: RouterDecision, *, modifiers=frozenset(), teacher_available: bool = False,
             why: str = "the user is dissatisfied") -> RouterDecision:
    """The next tier up after a dissatisfied follow-up: base -> modifier -> teacher."""
    order = ["base", "modifier", "teacher"]
    available = {"base": True, "modifier": decision.domain in set(modifiers), "teacher": teacher_available}
    above = [r for r in order[order.index(decision.route) + 1:] if available[r]]
    route = above[0] if above else decision.route
    reason = f"{why}: {decision.route} -> {route}" if above else f"{why}, but nothing above {decision.route}"
    return RouterDecision(route, decision.domain, decision.probabilities, decision.confidence,
                          decision.domain if route == "modifier" else None, decision.threshold, decision.mode,
                          reason, "escalation")
