"""A model as configuration names it (`conf/model/*.yaml`)."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hf_id: str  # hub id (or path) of the real model
    local_dir: str | None = None  # prepared HF folder; used instead of hf_id when set (embedded model)
    gguf: str | None = None  # a GGUF of the same weights, for llama.cpp stages
    revision: str = "main"
    max_seq_len: int = 2048
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    @property
    def source(self) -> str:
        """What `from_pretrained` is given: the prepared folder if there is one, else the hub id."""
        return self.local_dir if self.local_dir else self.hf_id

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()
