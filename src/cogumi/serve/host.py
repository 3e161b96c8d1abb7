"""What this machine can serve with: cores, memory, GPU offload; and the defaults they imply
(threads, context, mode) for whatever the config leaves unset. Reported at start-up and in /health."""

import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class HostProfile:
    cores: int  # usable by this process (affinity / cgroup-pinned cores)
    memory_gb: float | None
    gpu_offload: bool  # llama.cpp was built with a GPU back end
    threads: int
    n_ctx: int
    mode: str
    chosen: dict  # which of threads / n_ctx / mode were detected (vs configured)

    def to_dict(self) -> dict:
        return asdict(self)


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _gpu_offload() -> bool:
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except (ImportError, AttributeError):
        return False


def default_mode(cores: int, gpu: bool) -> str:
    """quality on a GPU; balanced (an 8-token base probe per routed question) with 2+ cores; speed below."""
    if gpu:
        return "quality"
    return "balanced" if cores >= 2 else "speed"


def default_n_ctx(model_max: int, memory_gb: float | None) -> int:
    # The KV cache grows with the context; a small box keeps it modest.
    return model_max if memory_gb is None or memory_gb >= 8 else min(model_max, 2048)


def detect_host(model_max_ctx: int, threads: int | None = None, n_ctx: int | None = None,
                mode: str | None = None) -> HostProfile:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory, gpu = _memory_gb(), _gpu_offload()
    chosen = {"threads": "config" if threads else "detected", "n_ctx": "config" if n_ctx else "detected",
              "mode": "config" if mode else "detected"}
    return HostProfile(cores, memory, gpu, threads or cores, n_ctx or default_n_ctx(model_max_ctx, memory),
                       mode or default_mode(cores, gpu), chosen)
