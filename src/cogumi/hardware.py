"""What a hardware profile decides: device, precision, 4-bit loading, batch sizes, threads, strategy."""

import os
from dataclasses import dataclass

_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class HardwareSpec:
    name: str
    accelerator: str = "cpu"  # lightning accelerator: cpu | cuda | mps
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # lightning strategy: auto | ddp | fsdp | deepspeed_stage_2 ...
    precision: str = "32-true"  # lightning precision for training
    dtype: str = "float32"  # dtype the model weights load in
    # QLoRA: training stages load the frozen base as bitsandbytes NF4. Read by training only: every
    # other stage (prune, quantize, perplexity, suites, fidelity references) loads `dtype` weights.
    load_in_4bit: bool = False
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_double_quant: bool = True
    bnb_4bit_compute_dtype: str = "bfloat16"
    optimizer: str = "adamw"  # adamw | adamw_8bit (bitsandbytes paged 8-bit AdamW)
    batch_size: int = 4
    grad_accum: int = 1
    eval_batch_size: int = 4
    threads: int | None = None  # torch intra-op threads; None = all cores

    def __post_init__(self):
        for key in ("dtype", "bnb_4bit_compute_dtype"):
            if getattr(self, key) not in _DTYPES:
                raise ValueError(f"hardware.{key}={getattr(self, key)!r}: expected one of {_DTYPES}")

    @property
    def device(self) -> str:
        """This process's device. Under DDP/FSDP each rank is its own process and the launcher (Lightning,
        torchrun) sets LOCAL_RANK: rank k loads onto cuda:k instead of every rank landing on cuda:0."""
        if self.accelerator == "cuda":
            # One process without a launcher: "cuda", the current device (CUDA_VISIBLE_DEVICES decides).
            return f"cuda:{int(os.environ['LOCAL_RANK'])}" if "LOCAL_RANK" in os.environ else "cuda"
        return {"mps": "mps"}.get(self.accelerator, "cpu")

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    def apply_threads(self) -> None:
        """Pin torch's thread count (a 2-core box loses time to oversubscription otherwise)."""
        import torch

        threads = self.threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
