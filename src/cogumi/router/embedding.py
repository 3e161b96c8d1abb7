"""The sentence encoder the router and the escalation detector share: all-MiniLM-L6-v2, loaded once.

A head trained on one encoder's vectors is meaningless on another's, so every artifact records the
encoder's identity (name + sha256 of its weights + how many of its transformer layers are used) and
loading refuses a mismatch.

`layers` keeps the first N transformer layers (mean-pooled, unit length, as sentence-transformers
pools the last): a router decision is one query's encode, and its cost is linear in the layers.
Measured on the router's val split (benchmarks/results/router_latency.json, report.json of the
router artifact): 3 of 6 layers classify domains as well as 6 at half the latency.

`quantize: int8` applies torch's dynamic int8 quantization to the linear layers (weights int8,
activations quantized per call): measured under load (1 thread, nice 19, load ~12) the 3-layer encode
of one query p50 7.9 ms vs 23.8 ms in fp32; val accuracy 0.923 vs 0.938 (418 queries, logistic head).
"""

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from cogumi.errors import ConfigError
from cogumi.evaluate.clustering import embedder_dir
from cogumi.hashing import sha256_file

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
MAX_TOKENS = 128  # a routed query longer than this is classified by its start


QUANTIZE = (None, "int8")


def encoder_identity(model_dir: str | Path | None = None, layers: int | None = None,
                     quantize: str | None = None) -> dict:
    """{name, sha256, layers[, quantize]} of a sentence-transformers folder (the hash is of its weights)."""
    folder = Path(model_dir or embedder_dir())
    weights = next((folder / name for name in _WEIGHT_FILES if (folder / name).is_file()), None)
    digest = sha256_file(weights) if weights is not None else "no-weights"
    name = folder.parent.name if folder.name == "model" else folder.name
    identity = {"name": name, "sha256": digest, "layers": layers}
    return identity | ({"quantize": quantize} if quantize else {})


class Encoder:
    """Unit-length MiniLM embeddings; the model stays loaded (a query's encode is the router's cost)."""

    def __init__(self, model_dir: str | Path | None = None, threads: int | None = None, layers: int | None = None,
                 quantize: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads:
            torch.set_num_threads(int(threads))
        self.model_dir = Path(model_dir or embedder_dir())
        # the sentence-transformers folder's module 0 is this BERT at the folder's root; the pooling and
        # normalisation modules are `encode` below, so the sentence_transformers import (~1.5 s) is not needed
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        self.transformer = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).eval()
        stack = self.transformer.encoder.layer
        if layers is not None and not 1 <= int(layers) <= len(stack):
            raise ConfigError(f"encoder layers={layers}: {self.model_dir} has {len(stack)} transformer layers")
        if layers is not None:
            self.transformer.encoder.layer = stack[:int(layers)]
        self.transformer.pooler = None  # BERT's [CLS] pooler is unused by mean pooling
        if quantize not in QUANTIZE:
            raise ConfigError(f"encoder quantize={quantize!r}: expected one of {QUANTIZE}")
        if quantize == "int8":
            import warnings

            with warnings.catch_warnings():  # torch.ao's eager quantization is deprecated in favour of torchao
                warnings.simplefilter("ignore")
                self.transformer = torch.ao.quantization.quantize_dynamic(self.transformer, {torch.nn.Linear},
                                                                          dtype=torch.qint8)
        self.identity = encoder_identity(self.model_dir, None if layers is None else int(layers), quantize)

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Mean-pooled, unit-length vectors; batches sorted by length so padding stays small."""
        import torch
        from tqdm.auto import tqdm

        texts = list(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), self.transformer.config.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc="encode", disable=not progress, mininterval=5):
                rows = order[start:start + batch_size]
                batch = self.tokenizer([texts[i] for i in rows], return_tensors="pt", truncation=True,
                                       max_length=MAX_TOKENS, padding=len(rows) > 1)
                hidden = self.transformer(input_ids=batch["input_ids"],
                                          attention_mask=batch["attention_mask"]).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                vectors[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return vectors


@lru_cache(maxsize=4)
def shared_encoder(model_dir: str | None = None, layers: int | None = None, quantize: str | None = None) -> Encoder:
    """One loaded encoder per (folder, layers, quantize) and process (router and detector in a server share it)."""
    return Encoder(model_dir, layers=layers, quantize=quantize)
