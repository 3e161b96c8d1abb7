"""Routing: domain classifier + calibrated confidence + policy, and the dissatisfaction detector."""

from cogumi.router.escalation import EscalationDetector, load_escalation
from cogumi.router.model import Router, load_router
from cogumi.router.policy import MODES, DomainPrediction, RouterDecision, decide, escalate

__all__ = ["DomainPrediction", "EscalationDetector", "MODES", "Router", "RouterDecision", "decide", "escalate",
           "load_escalation", "load_router"]
