"""Loading models: the embedded student and any HF id or folder, through one code path."""

from cogumi.models.loader import chat, load_causal_lm, load_tokenizer
from cogumi.models.spec import ModelSpec

__all__ = ["ModelSpec", "chat", "load_causal_lm", "load_tokenizer"]
