"""A teacher or judge behind any OpenAI-compatible endpoint, with a cost ledger."""

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from cogumi.errors import CogumiError
from cogumi.teachers.spec import TeacherSpec

log = logging.getLogger(__name__)


class TeacherError(CogumiError):
    """The endpoint could not be reached or refused the request."""


@dataclass(frozen=True)
class TeacherReply:
    text: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    model: str


class TeacherClient:
    """`chat(messages) -> TeacherReply`; every call is appended to the JSONL ledger (if one is given)."""

    def __init__(self, spec: TeacherSpec, ledger_path: Path | None = None, timeout_s: float = 120,
                 max_retries: int = 2):
        from openai import OpenAI

        self.spec = spec
        self.ledger_path = Path(ledger_path) if ledger_path else None
        self.client = OpenAI(base_url=spec.base_url, api_key=spec.api_key(), timeout=timeout_s,
                             max_retries=max_retries)
        self.calls = 0
        self.total_cost_usd = 0.0
        self.total_tokens = {"input": 0, "output": 0}

    def chat(self, messages: list[dict], max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, **extra) -> TeacherReply:
        import openai

        started = time.time()
        try:
            response = self.client.chat.completions.create(
                model=self.spec.model, messages=messages, max_tokens=max_tokens, temperature=temperature,
                seed=seed, **extra)
        except openai.APIConnectionError as err:
            raise TeacherError(f"teacher '{self.spec.name}' unreachable at {self.spec.base_url}: {err}") from err
        except openai.APIStatusError as err:
            raise TeacherError(f"teacher '{self.spec.name}' answered HTTP {err.status_code}: {err.message}") from err
        usage = response.usage
        input_tokens = usage.prompt_tokens if usage else 0
        output_tokens = usage.completion_tokens if usage else 0
        reply = TeacherReply(
            text=response.choices[0].message.content or "",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=self.spec.cost_usd(input_tokens, output_tokens),
            latency_s=round(time.time() - started, 3),
            model=response.model or self.spec.model,
        )
        self._account(reply)
        return reply

    def _account(self, reply: TeacherReply) -> None:
        self.calls += 1
        self.total_cost_usd += reply.cost_usd
        self.total_tokens["input"] += reply.input_tokens
        self.total_tokens["output"] += reply.output_tokens
        if self.ledger_path is not None:
            self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
            entry = {"at": datetime.now(timezone.utc).isoformat(), "teacher": self.spec.name,
                     **{k: v for k, v in asdict(reply).items() if k != "text"}}
            with open(self.ledger_path, "a") as ledger:
                ledger.write(json.dumps(entry) + "\n")

    def summary(self) -> dict:
        """For manifests: what this run's teacher calls cost."""
        return {"teacher": self.spec.name, "model": self.spec.model, "calls": self.calls,
                "input_tokens": self.total_tokens["input"], "output_tokens": self.total_tokens["output"],
                "cost_usd": round(self.total_cost_usd, 6)}
