"""Test-only builders for the serve tests: GGUF LoRAs made from small PEFT adapters on the embedded
model, and a tiny router / dissatisfaction detector (keyword rules around the real routing policy)
for tests that must not depend on a trained router artifact."""

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.paths import cache_dir
from cogumi.router.policy import DomainPrediction, decide

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_test_lora(name: str, seed: int, rank: int = 4, steps: int = 30) -> Path:
    """A GGUF LoRA trained for a few steps to open every reply with "<Name> here:", converted by
    llama.cpp's convert_lora_to_gguf.py and cached by its recipe.

    Random B matrices (tried first) changed greedy replies on some prompts and draws and not on
    others, so tests that need "the adapter changes the answer" failed on one machine and passed on
    another. A trained opening is a large, known effect: base, alpha and beta replies always differ."""
    from cogumi.assets import converter_dir, embedded_model_dir
    from cogumi.modifiers.gguf_lora import convert_lora

    recipe = hashlib.sha256(f"{name}-{seed}-{rank}-{steps}-{LORA_TARGETS}-trained-opening".encode()).hexdigest()[:12]
    target = cache_dir() / "test-loras" / f"{name}-{recipe}.gguf"
    if target.is_file():
        return target
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = embedded_model_dir()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(LORA_TARGETS)))
    prompts = ("Name three colours of the rainbow.", "Write python code that prints hello.",
               "Name a primary colour.", "What is the capital of France?", "Tell me a joke.")
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p},
                                            {"role": "assistant", "content": f"{name.title()} here: {name} {name}."}],
                                           tokenize=False) for p in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=3e-3)
    peft_model.train()
    for _ in range(steps):
        loss = peft_model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    adapter_dir = target.parent / f"{name}-{recipe}-peft"
    peft_model.save_pretrained(adapter_dir)
    partial = target.with_suffix(".part.gguf")
    convert_lora(adapter_dir, base_dir, partial, converter_dir())
    partial.rename(target)
    return target


@dataclass
class KeywordRouter:
    """The router interface (classify / confidence / decide) with keyword domains; the policy is the
    real `cogumi.router.policy.decide`. `confidence` maps the probe's mean log-probability through a
    fixed logistic curve, so a test can pick the route by the threshold."""

    keywords: dict = field(default_factory=lambda: {"code": ("python", "function", "code"),
                                                    "math": ("sum", "number", "add")})
    threshold: float = 0.5
    confidences: list = field(default_factory=list)  # what confidence() returned, in order

    def classify(self, text: str) -> DomainPrediction:
        hits = {d: sum(w in text.lower() for w in words) for d, words in self.keywords.items()}
        total = sum(hits.values())
        probabilities = {d: (n / total if total else 1 / len(hits)) for d, n in hits.items()}
        best = max(probabilities, key=probabilities.get)
        return DomainPrediction(best if total else "unknown", probabilities)

    def confidence(self, token_logprobs, top_logprobs=None) -> float:
        import math

        mean = sum(token_logprobs) / len(token_logprobs) if token_logprobs else -10.0
        value = 1 / (1 + math.exp(-(mean + 1.0) * 4))
        self.confidences.append(value)
        return value

    def decide(self, text, *, mode="balanced", confidence=None, modifiers=frozenset(), teacher_available=False):
        return decide(self.classify(text), threshold=self.threshold, mode=mode, confidence=confidence,
                      modifiers=modifiers, teacher_available=teacher_available)


class PhraseDetector:
    """The escalation detector interface: a follow-up is dissatisfied when it says so plainly."""

    PATTERN = re.compile(r"\b(wrong|incorrect|not what i asked|doesn't work|useless)\b", re.I)

    def score(self, text: str) -> float:
        return 1.0 if self.PATTERN.search(text) else 0.0

    def is_dissatisfied(self, text: str) -> bool:
        return self.score(text) >= 0.5
