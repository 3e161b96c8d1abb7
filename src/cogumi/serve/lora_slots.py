"""GGUF LoRA modifiers on one llama.cpp context: loaded once, applied per request, no model reload.

llama.cpp keeps a loaded adapter beside the model and applies it at graph time, so switching is
`llama_set_adapters_lora` (a pointer swap; the next decode rebuilds the graph) — tens of
milliseconds at most, measured per swap. At most `max_resident` adapters stay loaded; the least
recently used one is freed when another must be loaded (lazy loading: a first use pays the read).
"""

import ctypes
import logging
import time
from collections import OrderedDict
from pathlib import Path

from cogumi.errors import CogumiError

log = logging.getLogger(__name__)


class AdapterLoadError(CogumiError):
    """llama.cpp refused a GGUF LoRA (wrong base, corrupt file)."""


class LoraSlots:
    def __init__(self, model_ptr, ctx_ptr, files: dict[str, Path], max_resident: int = 8, preload: bool = True):
        if max_resident < 1:
            raise ValueError(f"max_resident={max_resident}: expected >= 1")
        self._model, self._ctx = model_ptr, ctx_ptr
        self.files = {name: Path(path) for name, path in files.items()}
        self.max_resident = max_resident
        self._loaded: OrderedDict[str, object] = OrderedDict()  # name -> llama_adapter_lora_p, LRU first
        self.active: str | None = None
        self.loads = 0
        for name in list(self.files)[:max_resident] if preload else []:
            self._load(name)

    @property
    def resident(self) -> list[str]:
        return list(self._loaded)

    def _load(self, name: str):
        import llama_cpp

        if name in self._loaded:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        while len(self._loaded) >= self.max_resident:
            evicted, handle = self._loaded.popitem(last=False)
            if evicted == self.active:  # never free what the context still points at
                self._set(None)
            llama_cpp.llama_adapter_lora_free(handle)
            log.info("LoRA %s evicted (LRU, %d resident max)", evicted, self.max_resident)
        started = time.perf_counter()
        handle = llama_cpp.llama_adapter_lora_init(self._model, str(self.files[name]).encode())
        if not handle:
            raise AdapterLoadError(f"llama.cpp could not load LoRA '{name}' from {self.files[name]}")
        self._loaded[name] = handle
        self.loads += 1
        log.info("LoRA %s loaded from %s in %.1f ms", name, self.files[name], (time.perf_counter() - started) * 1e3)
        return handle

    def _set(self, name: str | None) -> None:
        import llama_cpp

        if name is None:
            llama_cpp.llama_set_adapters_lora(self._ctx, None, 0, None)
        else:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._loaded[name])
            llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
        self.active = name

    def apply(self, name: str | None) -> tuple[bool, float]:
        """Make `name` (None = the bare base) the context's adapter: (changed, milliseconds it took,
        including a lazy load)."""
        if name == self.active:
            if name is not None:
                self._loaded.move_to_end(name)
            return False, 0.0
        if name is not None and name not in self.files:
            raise KeyError(name)
        started = time.perf_counter()
        if name is not None:
            self._load(name)
        self._set(name)
        return True, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        import llama_cpp

        self._set(None)
        while self._loaded:
            llama_cpp.llama_adapter_lora_free(self._loaded.popitem()[1])
