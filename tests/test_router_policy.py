"""The routing policy: threshold, modifier/teacher fallbacks, modes, escalation — never a crash."""

import pytest

from cogumi.errors import ConfigError
from cogumi.router import DomainPrediction, decide, escalate
from cogumi.router.policy import UNKNOWN_DOMAIN

CODE = DomainPrediction("code", {"code": 0.9, "general": 0.1})


def test_below_threshold_picks_the_modifier_and_above_keeps_the_base():
    low = decide(CODE, threshold=0.8, confidence=0.42, modifiers={"code"})
    high = decide(CODE, threshold=0.8, confidence=0.91, modifiers={"code"})
    assert (low.route, low.adapter, low.decided_by) == ("modifier", "code", "router")
    assert (high.route, high.adapter) == ("base", None)
    assert decide(CODE, threshold=0.8, confidence=0.8, modifiers={"code"}).route == "base"  # >= keeps the base


def test_missing_modifier_escalates_to_the_teacher_or_stays_with_the_base():
    teacher = decide(CODE, threshold=0.8, confidence=0.1, modifiers={"math"}, teacher_available=True)
    alone = decide(CODE, threshold=0.8, confidence=0.1, modifiers=set(), teacher_available=False)
    assert teacher.route == "teacher" and teacher.adapter is None
    assert alone.route == "base" and "no modifier for code" in alone.reason


def test_unknown_domain_never_crashes():
    unknown = DomainPrediction(UNKNOWN_DOMAIN, {"code": 0.3, "math": 0.3})
    assert decide(unknown, threshold=0.5, confidence=0.1, modifiers={"code"}, teacher_available=True).route == "teacher"
    assert decide(unknown, threshold=0.5, confidence=0.1, mode="quality").route == "base"


def test_confidence_not_known_yet_routes_to_the_base():
    decision = decide(CODE, threshold=0.5, confidence=None, modifiers={"code"})
    assert decision.route == "base" and "awaiting confidence" in decision.reason


def test_modes():
    assert decide(CODE, threshold=0.5, confidence=0.0, mode="speed", modifiers={"code"}).route == "base"
    quality = decide(CODE, threshold=0.5, confidence=0.99, mode="quality", modifiers={"code"})
    assert (quality.route, quality.decided_by) == ("modifier", "mode")
    with pytest.raises(ConfigError, match="routing mode"):
        decide(CODE, threshold=0.5, mode="fast")


def test_escalation_moves_one_tier_up():
    base = decide(CODE, threshold=0.5, confidence=0.9, modifiers={"code"})
    up = escalate(base, modifiers={"code"}, teacher_available=True)
    assert (up.route, up.adapter, up.decided_by) == ("modifier", "code", "escalation")
    assert escalate(up, modifiers={"code"}, teacher_available=True).route == "teacher"
    top = escalate(base, modifiers=set(), teacher_available=False)
    assert top.route == "base" and "nothing above" in top.reason


def test_decision_serialises():
    record = decide(CODE, threshold=0.5, confidence=0.2, modifiers={"code"}).to_dict()
    assert set(record) >= {"route", "domain", "probabilities", "confidence", "adapter", "threshold", "mode",
                           "reason", "decided_by"}
