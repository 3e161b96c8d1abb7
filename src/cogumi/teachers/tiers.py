"""The tiers of the teacher cascade: where an answer to an unsolved item can come from.

- `reference`: the data set's own gold answer (recorded as such), where the mining half has one;
- `self`: the student itself, best-of-N sampled through llama.cpp (the verifier keeps the right ones:
  rejection sampling);
- `endpoint`: any OpenAI-compatible endpoint — the project's own server on loopback, a local
  vLLM/llama-server, or a paid API from the `teacher` group — priced by the client's ledger.
Each returns candidate answers; the cascade, not the tier, decides which pass the verifier.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.errors import ConfigError
from cogumi.teachers.client import TeacherClient, TeacherError
from cogumi.teachers.spec import TeacherSpec

log = logging.getLogger(__name__)


class TierUnavailable(TeacherError):
    """An optional tier could not be reached: its items go on to the next tier."""


@dataclass
class Candidates:
    answers: list[str]
    tokens: int = 0  # tokens generated (and, for endpoints, read) to produce them
    cost_usd: float = 0.0


@dataclass
class ReferenceTier:
    name: str = "reference"
    seen: list[str] = field(default_factory=list)  # item ids this tier was given, in order

    def answers(self, item) -> Candidates:
        self.seen.append(item.id)
        return Candidates([item.reference] if item.reference else [])


@dataclass
class SelfTier:
    """The student sampled `n` times (temperature > 0) through a selfconsistency.Sampler."""

    sampler: object
    n: int = 4
    temperature: float = 0.8
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int = 0
    name: str = "self"
    seen: list[str] = field(default_factory=list)

    def answers(self, item) -> Candidates:
        self.seen.append(item.id)
        prompt = self.sampler.as_chat(item.prompt)
        texts = self.sampler.sample(prompt, self.n, self.temperature, self.max_tokens, list(self.stop), self.seed)
        return Candidates(texts, tokens=sum(self.sampler.tokens(t) for t in texts))


class EndpointTier:
    """An OpenAI-compatible endpoint; `optional`: unreachable means skipped (offline runs), not a failure."""

    def __init__(self, spec: TeacherSpec, ledger: Path | None, n: int = 1, temperature: float = 0.0,
                 max_tokens: int = 128, optional: bool = False, seed: int = 0, timeout_s: float = 120):
        self.name = spec.name
        self.spec, self.n, self.temperature, self.max_tokens = spec, n, temperature, max_tokens
        self.optional, self.seed = optional, seed
        self.seen: list[str] = []
        try:
            self.client = TeacherClient(spec, ledger_path=ledger, timeout_s=timeout_s,
                                        max_retries=0 if optional else 2)
        except ConfigError as err:  # e.g. a paid tier whose key is not set
            if not optional:
                raise
            raise TierUnavailable(str(err)) from err

    def answers(self, item) -> Candidates:
        self.seen.append(item.id)
        texts, tokens, cost = [], 0, 0.0
        for i in range(self.n):
            try:
                reply = self.client.chat([{"role": "user", "content": item.prompt}], max_tokens=self.max_tokens,
                                         temperature=self.temperature if self.n == 1 else max(self.temperature, 0.7),
                                         seed=self.seed + i)
            except TeacherError as err:
                if self.optional:
                    raise TierUnavailable(str(err)) from err
                raise
            texts.append(reply.text)
            tokens += reply.input_tokens + reply.output_tokens
            cost += reply.cost_usd
        return Candidates(texts, tokens, cost)


def teacher_spec(teacher) -> TeacherSpec:
    """A `teacher` group entry as Hydra gives it: already instantiated, or its mapping."""
    if isinstance(teacher, TeacherSpec):
        return teacher
    return TeacherSpec(**{k: v for k, v in dict(teacher).items() if k != "_target_"})


def build_tier(settings: dict, *, sampler=None, ledger: Path | None = None, max_tokens: int = 128,
               stop: tuple[str, ...] = (), seed: int = 0):
    """A tier from one entry of the stage's `tiers` knob ({kind, ...})."""
    settings = dict(settings)
    kind = settings.pop("kind")
    if kind == "reference":
        return ReferenceTier()
    if kind == "self":
        if sampler is None:
            raise ConfigError("tier 'self' needs the student (a GGUF sampler)")
        return SelfTier(sampler, n=int(settings.get("n", 4)), temperature=float(settings.get("temperature", 0.8)),
                        max_tokens=max_tokens, stop=tuple(stop), seed=seed)
    if kind == "endpoint":
        return EndpointTier(teacher_spec(settings["teacher"]), ledger, n=int(settings.get("n", 1)),
                            temperature=float(settings.get("temperature", 0.0)), max_tokens=max_tokens,
                            optional=bool(settings.get("optional", False)), seed=seed)
    raise ConfigError(f"tier kind {kind!r}: expected reference, self or endpoint")
