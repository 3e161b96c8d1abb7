"""`python -m cogumi route "<text>"`: the router's decision for one query, as JSON, to debug routing."""

import contextlib
import json
import sys

from cogumi.router.escalation import load_escalation
from cogumi.router.model import load_router


def route_command(text: str, router: str = "latest:router", mode: str = "balanced", confidence: float | None = None,
                  modifiers: list[str] | None = None, teacher: bool = False, escalation: str | None = None,
                  threshold: float | None = None) -> dict:
    """The decision (domain with probabilities, confidence when given, route, why) as a dict.

    Libraries print on import (transformers announces W&B offline mode on stdout): while the models
    load, stdout goes to stderr, so stdout holds the JSON alone.
    """
    with contextlib.redirect_stdout(sys.stderr):
        return _decide(text, router, mode, confidence, modifiers, teacher, escalation, threshold)


def _decide(text, router, mode, confidence, modifiers, teacher, escalation, threshold) -> dict:
    decision = load_router(router).decide(text, mode=mode, confidence=confidence, modifiers=set(modifiers or ()),
                                          teacher_available=teacher, threshold=threshold).to_dict()
    if escalation:
        detector = load_escalation(escalation)
        decision["dissatisfaction"] = {"score": round(detector.score(text), 4),
                                       "dissatisfied": detector.is_dissatisfied(text), "threshold": detector.threshold}
    return decision


def print_decision(decision: dict) -> None:
    print(json.dumps(decision, indent=2))
