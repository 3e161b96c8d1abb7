"""Measured sparsity of a model's weights: per layer, per module group, and N:M pattern checks."""

import re

# Module groups of a decoder-only transformer (Llama naming, which SmolLM2 and Llama 3 share).
GROUPS = {
    "attention": re.compile(r"self_attn\.(q|k|v|o)_proj$"),
    "mlp": re.compile(r"mlp\.(gate|up|down)_proj$"),
}


def group_of(name: str) -> str | None:
    return next((group for group, pattern in GROUPS.items() if pattern.search(name)), None)


def layer_sparsity(model) -> dict[str, dict]:
    """Fraction of exactly-zero weights of every Linear and Embedding, with its group and size."""
    import torch

    report = {}
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            weight = module.weight.detach()
            report[name] = {"group": group_of(name) or ("embedding" if isinstance(module, torch.nn.Embedding)
                                                        else "other"),
                            "params": weight.numel(),
                            "sparsity": round((weight == 0).sum().item() / weight.numel(), 6)}
    return report


def group_sparsity(layers: dict[str, dict]) -> dict[str, float]:
    """Parameter-weighted sparsity of each group (attention, mlp, embedding, other)."""
    totals: dict[str, list[float]] = {}
    for row in layers.values():
        zeros, params = totals.setdefault(row["group"], [0.0, 0])
        totals[row["group"]] = [zeros + row["sparsity"] * row["params"], params + row["params"]]
    return {group: round(zeros / params, 6) for group, (zeros, params) in totals.items()}


def violates_n_m(weight, n: int, m: int) -> int:
    """How many groups of `m` consecutive input weights hold more than `n` non-zeros (0 = pattern holds)."""
    rows, cols = weight.shape
    if cols % m:
        raise ValueError(f"width {cols} is not a multiple of {m}")
    nonzero = (weight.reshape(rows, cols // m, m) != 0).sum(-1)
    return int((nonzero > n).sum().item())
