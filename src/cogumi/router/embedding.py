"""The sentence encoder the router and the escalation detector share: all-MiniLM-L6-v2, loaded once.

A head trained on one encoder's vectors is meaningless on another's, so every artifact records the
encoder's identity (name + sha256 of its weights) and loading refuses a mismatch.
"""

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from cogumi.evaluate.clustering import embedder_dir
from cogumi.hashing import sha256_file

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def encoder_identity(model_dir: str | Path | None = None) -> dict:
    """{name, sha256} of a sentence-transformers folder (the hash is of its weights file)."""
    folder = Path(model_dir or embedder_dir())
    weights = next((folder / name for name in _WEIGHT_FILES if (folder / name).is_file()), None)
    digest = sha256_file(weights) if weights is not None else "no-weights"
    name = folder.parent.name if folder.name == "model" else folder.name
    return {"name": name, "sha256": digest}


class Encoder:
    """Unit-length MiniLM embeddings; the model stays loaded (a query's encode is the router's cost)."""

    def __init__(self, model_dir: str | Path | None = None, threads: int | None = None):
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(int(threads))
        self.model_dir = Path(model_dir or embedder_dir())
        self.model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        self.identity = encoder_identity(self.model_dir)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vectors = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                        show_progress_bar=progress, convert_to_numpy=True)
        return vectors.astype(np.float32)


@lru_cache(maxsize=4)
def shared_encoder(model_dir: str | None = None) -> Encoder:
    """One loaded encoder per folder and process (router and detector in a server share it)."""
    return Encoder(model_dir)
