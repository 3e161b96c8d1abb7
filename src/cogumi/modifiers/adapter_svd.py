"""Rank reduction of a trained LoRA (the seeds' 3H): the SVD of each layer's update B·A, truncated.

A LoRA of rank r adds ΔW = s · B · A to each targeted weight (s = alpha / r, or alpha / √r with
rsLoRA). The top k singular directions of ΔW are its best rank-k approximation (Eckart–Young), so
keeping them writes a PEFT adapter of rank k, with s folded into the factors (alpha = k, scale 1).
Each layer's relative Frobenius error ‖ΔW − ΔW_k‖ / ‖ΔW‖ is returned: the cut's cost is visible
before any gate runs. The SVD goes through the small factors (QR of B and of Aᵀ, then an r × r
SVD), never the full out × in matrix. llama.cpp's converter turns the result into a GGUF LoRA as usual.
"""

import json
import math
import shutil
from pathlib import Path

from cogumi.errors import ConfigError

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def _scale(config: dict) -> float:
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def truncated_factors(a, b, scale: float, rank: int):
    """(A_k, B_k, singular values of s·B·A) with B_k @ A_k the best rank-`rank` approximation of s·B·A."""
    import torch

    q_b, r_b = torch.linalg.qr(b.double())
    q_a, r_a = torch.linalg.qr(a.double().T)
    u, s, vh = torch.linalg.svd(r_b @ r_a.T)
    s = s * scale
    root = s[:rank].sqrt()
    return root[:, None] * (vh[:rank] @ q_a.T), (q_b @ u[:, :rank]) * root, s


def reduce_adapter(adapter_dir: Path, out_dir: Path, rank: int) -> dict:
    """Write a rank-`rank` PEFT adapter to `out_dir`; return the per-layer relative errors and a summary."""
    from safetensors.torch import load_file, save_file

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    config = json.loads((adapter_dir / CONFIG).read_text())
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ConfigError(f"{adapter_dir / CONFIG}: per-layer rank/alpha patterns are not supported by rank reduction")
    if not 1 <= rank <= config["r"]:
        raise ConfigError(f"compression rank {rank} must be in [1, {config['r']}] (the adapter's rank)")
    tensors = load_file(str(adapter_dir / WEIGHTS))
    scale, reduced, errors = _scale(config), {}, {}
    for key, value in tensors.items():
        if ".lora_B." in key:
            continue
        if ".lora_A." not in key:
            reduced[key] = value
            continue
        b_key = key.replace(".lora_A.", ".lora_B.")
        new_a, new_b, s = truncated_factors(value, tensors[b_key], scale, rank)
        total = float((s ** 2).sum())
        errors[key.split(".lora_A.")[0]] = math.sqrt(float((s[rank:] ** 2).sum()) / total) if total > 0 else 0.0
        reduced[key], reduced[b_key] = new_a.to(value.dtype).contiguous(), new_b.to(value.dtype).contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(reduced, str(out_dir / WEIGHTS))
    (out_dir / CONFIG).write_text(json.dumps({**config, "r": rank, "lora_alpha": rank, "use_rslora": False}, indent=2))
    for extra in adapter_dir.iterdir():  # README, tokenizer files: carried over untouched
        if extra.name not in (WEIGHTS, CONFIG) and extra.is_file():
            shutil.copyfile(extra, out_dir / extra.name)
    values = list(errors.values())
    return {"rank": rank, "from_rank": config["r"], "layers": len(values),
            "max_relative_error": round(max(values, default=0.0), 5),
            "mean_relative_error": round(sum(values) / max(len(values), 1), 5), "per_layer": errors}


def compressed_lora(adapter_dir: Path, base_dir: Path, out_dir: Path, converter: Path, rank: int, outtype: str,
                    level: int) -> dict:
    """`out_dir`/adapter-r<k>/ (PEFT), its GGUF LoRA adapter-r<k>.gguf and that file's verified zstd pack."""
    from cogumi.compress.zstd_pack import pack_file
    from cogumi.modifiers.gguf_lora import convert_lora, size_mb

    report = reduce_adapter(adapter_dir, out_dir / f"adapter-r{rank}", rank)
    gguf = convert_lora(out_dir / f"adapter-r{rank}", base_dir, out_dir / f"adapter-r{rank}.gguf", converter, outtype)
    packed = pack_file(gguf, gguf.with_name(gguf.name + ".zst"), level, block_size=1 << 20, dict_size=16 << 10,
                       samples=16, sample_size=8 << 10)
    return {"compressed_rank": rank, "compressed_lora_mb": size_mb(gguf),
            "compressed_packed_mb": round(packed.packed_size / 2**20, 3),
            "svd_max_relative_error": report["max_relative_error"],
            "svd_mean_relative_error": report["mean_relative_error"]}
