"""The routed runtime: per request, the router picks base, a LoRA modifier or the teacher; the
engine answers; a dissatisfied follow-up re-answers the previous question one route up.

Modes (server default, or per request):
- speed: the router's domain decision alone, no probe;
- balanced: when a better route exists for the domain, the base model answers a short greedy probe
  and `router.confidence` (calibrated P(correct) from its token log-probabilities) decides whether the
  base keeps the question; the real answer (streamed) then comes from the chosen route;
- quality: the router's quality policy (the highest route it allows for the domain).
"""

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from cogumi.serve.feedback import FeedbackLog
from cogumi.serve.runtime import Completion, Engine, GenerationParams, RoutingRecord, UnknownModelError

log = logging.getLogger(__name__)
MODES = ("speed", "balanced", "quality")
LADDER = ("base", "modifier", "teacher")
MODIFIER_PREFIX = "cogumi/"


class RoutedRuntime:
    def __init__(self, engine: Engine, router=None, escalation=None, teacher: Engine | None = None,
                 mode: str = "balanced", probe_tokens: int = 8, feedback: FeedbackLog | None = None):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected one of {MODES}")
        self.engine, self.router, self.escalation, self.teacher = engine, router, escalation, teacher
        self.mode, self.probe_tokens = mode, probe_tokens
        self.feedback = feedback or FeedbackLog(None)
        self.n_ctx = engine.n_ctx
        self._answered: OrderedDict[str, tuple[str, str | None]] = OrderedDict()  # answer key -> (route, adapter)

    # ---- what can be asked for ---------------------------------------------------------------
    def models(self) -> list[str]:
        names = [self.engine.name, *(MODIFIER_PREFIX + d for d in self.engine.modifiers)]
        return names + ([self.teacher.name] if self.teacher else [])

    def _forced(self, requested: str | None) -> tuple[str, str | None] | None:
        """(route, adapter) a request forces, None when the router decides; unknown -> UnknownModelError."""
        if requested in (None, "", "auto"):
            return None
        if requested in ("base", self.engine.name):
            return "base", None
        if requested.startswith(MODIFIER_PREFIX) and requested[len(MODIFIER_PREFIX):] in self.engine.modifiers:
            return "modifier", requested[len(MODIFIER_PREFIX):]
        if self.teacher is not None and requested in ("teacher", self.teacher.name):
            return "teacher", None
        raise UnknownModelError(f"model '{requested}' is not served here; available: auto, base, "
                                f"{', '.join(self.models())}")

    def check_model(self, requested: str | None) -> None:
        self._forced(requested)

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def chat_prompt(self, messages: list[dict]) -> str:
        return self.engine.chat_prompt(messages)

    # ---- deciding ----------------------------------------------------------------------------
    def decide(self, text: str, prompt: str | list[dict], requested: str | None, mode: str | None) -> RoutingRecord:
        """`text` is what the router reads (the user's question); `prompt` what the base would answer."""
        mode = mode or self.mode
        if mode not in MODES:
            raise UnknownModelError(f"cogumi.mode={mode!r}: expected one of {MODES}")
        started = time.perf_counter()
        forced = self._forced(requested)
        if forced is not None:
            return self._record(*forced, mode=mode, decided_by="override", reason=f"model={requested}",
                                route_ms=(time.perf_counter() - started) * 1000)
        if self.router is None:
            return self._record("base", None, mode=mode, decided_by="default", reason="routing off",
                                route_ms=(time.perf_counter() - started) * 1000)
        modifiers, confidence, probe_ms = set(self.engine.modifiers), None, None
        if mode == "balanced" and (self.router.classify(text).domain in modifiers or self.teacher is not None):
            probe_started = time.perf_counter()
            confidence = self.router.confidence(self.engine.probe(prompt, self.probe_tokens))
            probe_ms = (time.perf_counter() - probe_started) * 1000
        decision = self.router.decide(text, mode=mode, confidence=confidence, modifiers=modifiers,
                                      teacher_available=self.teacher is not None)
        route_ms = (time.perf_counter() - started) * 1000 - (probe_ms or 0)
        route, adapter, reason = decision.route, decision.adapter, decision.reason
        if route == "modifier" and adapter not in modifiers:
            route, adapter, reason = "base", None, f"{reason}; modifier '{adapter}' is not served"
        if route == "teacher" and self.teacher is None:
            route, adapter, reason = "base", None, f"{reason}; no teacher configured"
        return self._record(route, adapter, mode=mode, decided_by=decision.decided_by, reason=reason,
                            domain=decision.domain, probabilities=decision.probabilities,
                            confidence=confidence if confidence is not None else decision.confidence,
                            threshold=decision.threshold, route_ms=route_ms, probe_ms=probe_ms)

    def _record(self, route, adapter, route_ms, probe_ms=None, **fields) -> RoutingRecord:
        model = {"base": self.engine.name, "modifier": MODIFIER_PREFIX + str(adapter),
                 "teacher": self.teacher.name if self.teacher else None}[route]
        timings = {"route_ms": round(route_ms, 3)}
        if probe_ms is not None:
            timings["probe_ms"] = round(probe_ms, 1)
        return RoutingRecord(route=route, model=model, adapter=adapter, timings=timings, **fields)

    def _one_up(self, route: str, domain: str | None) -> tuple[str, str | None] | None:
        if route == "base" and domain in self.engine.modifiers:
            return "modifier", domain
        if route in ("base", "modifier") and self.teacher is not None:
            return "teacher", None
        return None

    # ---- answering ---------------------------------------------------------------------------
    def chat(self, messages: list[dict], params: GenerationParams, model: str | None = None,
             on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None,
             queued_at: float | None = None, mode: str | None = None) -> Completion:
        started = time.perf_counter()
        escalated = self._escalate(messages, mode, started, params, on_text, cancelled, queued_at)
        if escalated is not None:
            return escalated
        record = self.decide(_last_user_text(messages), messages, model, mode)
        done = self._answer(record, messages, params, on_text, cancelled, started, queued_at)
        self._remember(messages, done)
        return done

    def complete(self, prompt: str, params: GenerationParams, model: str | None = None,
                 on_text: Callable[[str], None] | None = None, cancelled: Callable[[], bool] | None = None,
                 queued_at: float | None = None, mode: str | None = None) -> Completion:
        started = time.perf_counter()
        record = self.decide(prompt, prompt, model, mode)
        return self._answer(record, prompt, params, on_text, cancelled, started, queued_at)

    def _answer(self, record, conversation, params, on_text, cancelled, started, queued_at) -> Completion:
        # A chat goes to the engine as messages: each engine renders it with its own model's template.
        engine = self.teacher if record.route == "teacher" else self.engine
        reply = engine.generate(conversation, params, record.adapter, on_text, cancelled)
        ended = time.perf_counter()
        engine_start_offset_ms = (ended - started) * 1000 - reply.timings.get("total_ms", 0)
        record.timings.update({
            "swap_ms": reply.timings.get("swap_ms", 0.0),
            "queue_ms": round((started - queued_at) * 1000, 1) if queued_at else 0.0,
            # what the caller waits for the first token once its turn came: routing, probe, swap, prompt
            "ttft_ms": round(engine_start_offset_ms + reply.timings.get("ttft_ms", 0), 1),
            "total_ms": round((ended - started) * 1000, 1),
            "decode_tokens_per_s": reply.timings.get("decode_tokens_per_s")})
        return Completion(reply.text, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens, record)

    def close(self) -> None:
        self.engine.close()
        if self.teacher is not None:
            self.teacher.close()

    # ---- escalation ----------------------------------------------------------------------------
    def _remember(self, messages: list[dict], done: Completion) -> None:
        key = _answer_key(messages, done.text)
        self._answered[key] = (done.routing.route, done.routing.domain or done.routing.adapter)
        while len(self._answered) > 4096:
            self._answered.popitem(last=False)

    def _escalate(self, messages, mode, started, params, on_text, cancelled, queued_at) -> Completion | None:
        """When the last user turn says the previous answer failed: that question again, one route up."""
        if self.escalation is None or len(messages) < 3 or messages[-1]["role"] != "user" \
                or messages[-2]["role"] != "assistant" or not self.escalation.is_dissatisfied(messages[-1]["content"]):
            return None
        question_end = max(i for i, m in enumerate(messages[:-2]) if m["role"] == "user") + 1 \
            if any(m["role"] == "user" for m in messages[:-2]) else 0
        if question_end == 0:
            return None
        earlier, rejected = messages[:question_end], messages[-2]["content"]
        question = earlier[-1]["content"]
        previous = self._answered.get(_answer_key(earlier, rejected))
        if previous is None:  # answered elsewhere (another server, a restart): how it would be routed now
            routed = self.decide(question, earlier, None, mode)
            previous = (routed.route, routed.domain or routed.adapter)
        domain = previous[1] if previous[1] is not None else (
            self.router.classify(question).domain if self.router is not None else None)
        up = self._one_up(previous[0], domain)
        if up is None:
            log.info("dissatisfied follow-up, but no route above %s for domain %s", previous[0], domain)
            self.feedback.append(domain, question, rejected, None, previous[0])
            return None
        record = self._record(*up, mode=mode or self.mode, decided_by="escalation", domain=domain,
                              escalated_from=previous[0], route_ms=(time.perf_counter() - started) * 1000,
                              reason=f"dissatisfied follow-up: previous question re-answered above {previous[0]}")
        done = self._answer(record, earlier, params, on_text, cancelled, started, queued_at)
        self.feedback.append(domain, question, rejected, done.text, up[0])
        self._remember(earlier, done)
        return done


def _last_user_text(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])


def _answer_key(messages: list[dict], answer: str) -> str:
    text = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages) + "\x1d" + answer.strip()
    return hashlib.sha256(text.encode()).hexdigest()
