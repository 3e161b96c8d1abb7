"""THE place where Cogumi works around llm-compressor on CPU-only machines (TOOLCHAIN.md).

AWQModifier pins its cached activations (`IntermediatesCache.pin_memory`) to speed up host→GPU
copies. Pinning needs an accelerator; without one torch raises "Cannot access accelerator device".
On CPU there is no copy to speed up, so pinning is skipped for the duration of the block. With an
accelerator present nothing is patched.
"""

import logging
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def skip_pin_memory_without_accelerator():
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if torch.accelerator.is_available():
        yield
        return
    original = IntermediatesCache.__dict__["_pin_intermediate"]
    IntermediatesCache._pin_intermediate = classmethod(lambda cls, intermediate: None)
    log.info("CPU only: skipping llm-compressor's pin_memory of cached activations (cpu_workarounds.py)")
    try:
        yield
    finally:
        IntermediatesCache._pin_intermediate = original
