"""Domain modifiers: domain specs, their items and verifiers, the cascade stage, GGUF LoRA export, the card."""
