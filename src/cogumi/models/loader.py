"""One loader for the embedded student, artifact folders and real hub ids.

Hub loading stays real: on a machine with a hub an id like `meta-llama/Llama-3.1-8B-Instruct` loads
as usual; offline it fails with a message naming the id instead of a stack of HTTP errors.
"""

import logging
from pathlib import Path

from cogumi.errors import ModelLoadError
from cogumi.hardware import HardwareSpec

log = logging.getLogger(__name__)


def _load(kind: str, source: str | Path, loader, **kwargs):
    source = str(source)
    if not Path(source).is_dir() and (source.startswith((".", "/")) or Path(source).suffix):
        raise ModelLoadError(f"model folder '{source}' does not exist (did the setup or the producing stage run?)")
    try:
        return loader(source, **kwargs)
    except OSError as err:  # transformers raises OSError for missing files and for offline hub misses
        where = "folder" if Path(source).is_dir() else "hub id (offline here, and not in the local HF cache)"
        raise ModelLoadError(f"could not load {kind} from {where} '{source}': {err}".splitlines()[0]) from err


def load_tokenizer(source: str | Path, revision: str = "main"):
    from transformers import AutoTokenizer

    tokenizer = _load("tokenizer", source, AutoTokenizer.from_pretrained, revision=revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ModelLoadError(f"tokenizer of '{source}' has no chat template; Cogumi never hard-codes one")
    return tokenizer


def quantization_config(hardware: HardwareSpec):
    """bitsandbytes NF4 + double quant with the profile's compute dtype: the QLoRA base weights."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=hardware.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=hardware.bnb_4bit_double_quant,
        bnb_4bit_compute_dtype=getattr(torch, hardware.bnb_4bit_compute_dtype),
    )


def load_causal_lm(source: str | Path, hardware: HardwareSpec, revision: str = "main", load_in_4bit: bool = False):
    """(model, tokenizer) on this process's device in the profile's dtype, in eval mode.

    `load_in_4bit` is the caller's explicit request (QLoRA training passes `hardware.load_in_4bit`);
    every other stage measures or compresses the full-precision weights."""
    from transformers import AutoModelForCausalLM

    hardware.apply_threads()
    tokenizer = load_tokenizer(source, revision)
    device = hardware.device
    model = _load(
        "model", source, AutoModelForCausalLM.from_pretrained,
        revision=revision,
        dtype=hardware.torch_dtype(),
        quantization_config=quantization_config(hardware) if load_in_4bit else None,
        # 4-bit weights cannot be moved after loading: accelerate places them on this rank's device.
        device_map={"": device} if load_in_4bit else None,
    )
    if not load_in_4bit:
        model.to(device)
    model.eval()
    log.info("loaded %s (%s, %s%s, %.1fM params)", source, device, hardware.dtype, ", NF4" if load_in_4bit else "",
             sum(p.numel() for p in model.parameters()) / 1e6)
    return model, tokenizer


def chat(model, tokenizer, messages: list[dict], max_new_tokens: int = 64, **generate_kwargs) -> str:
    """Greedy (unless told otherwise) reply to a chat, formatted by the tokenizer's own template."""
    import torch

    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(model.device)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id, **generate_kwargs)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
