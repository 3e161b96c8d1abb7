"""A teacher/judge endpoint as `conf/teacher/*.yaml` names it."""

import os
from dataclasses import dataclass

from cogumi.errors import ConfigError


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    base_url: str  # any OpenAI-compatible endpoint
    model: str
    api_key_env: str | None = None  # environment variable holding the key; None = no key needed
    usd_per_1m_input: float = 0.0  # for the cost ledger
    usd_per_1m_output: float = 0.0

    def api_key(self) -> str:
        if self.api_key_env is None:
            return "no-key"  # the openai client insists on a non-empty key even for local servers
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"teacher '{self.name}' needs the environment variable {self.api_key_env}")
        return key

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.usd_per_1m_input + output_tokens * self.usd_per_1m_output) / 1e6
