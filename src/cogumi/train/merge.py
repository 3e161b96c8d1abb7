"""Save a trained LoRA adapter (`adapter/`) and the base with it merged in (`model/`, an HF folder).

The merge reloads the base in full precision rather than folding into 4-bit weights: merging into
NF4 would round the update away, and a merged QLoRA model is meant to be served unquantized (or
quantized again by the compress stages from this folder).
"""

import logging
from pathlib import Path

from cogumi.hardware import HardwareSpec

log = logging.getLogger(__name__)


def merged_model(base_source: str, adapter_dir: Path, dtype, keep_zeros: bool = False):
    """The base model with the adapter folded in (plain transformers model, no peft wrapper).

    `keep_zeros`: weights that are exactly zero in the base stay zero (a pruned model stays pruned).
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_source, dtype=dtype)
    zeros = {n: p == 0 for n, p in base.named_parameters() if p.ndim == 2} if keep_zeros else {}
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    if zeros:
        with torch.no_grad():
            for name, param in merged.named_parameters():
                if name in zeros and zeros[name].any():
                    param.masked_fill_(zeros[name], 0.0)
    return merged


def save_adapter_and_merged(peft_model, tokenizer, base_source: str, hardware: HardwareSpec, out_dir: Path,
                            keep_zeros: bool = False, merge: bool = True) -> None:
    import torch

    adapter_dir, model_dir = out_dir / "adapter", out_dir / "model"
    peft_model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    if not merge:
        log.info("saved adapter to %s (no merged model: its consumer applies the adapter)", adapter_dir)
        return
    # A 4-bit run computes in bf16/fp16; the merged folder keeps the profile's load dtype (fp32 on CPU).
    dtype = getattr(torch, hardware.dtype)
    merged = merged_model(base_source, adapter_dir, dtype, keep_zeros)
    merged.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    log.info("saved adapter to %s and merged model to %s", adapter_dir, model_dir)
