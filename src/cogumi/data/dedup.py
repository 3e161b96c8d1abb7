"""Exact then near-duplicate removal (MinHash LSH), keeping the higher-quality member of each group.

Signatures come from minhash.py (datasketch-compatible, computed in worker processes). The bucket
index is datasketch's `MinHashLSH` (`index: datasketch`) or a compact dict of band keys with the same
(b, r) banding (`index: compact`, ~4x less memory). Candidates are verified on the signatures
(estimated Jaccard >= threshold) before an item is dropped.

Streaming: items come from a callable that re-reads them (twice: exact, then near); only hashes,
signatures of group representatives and the index are held, never the texts.
"""

import itertools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from cogumi.data.minhash import exact_key, permutations, signed_chunks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    threshold: float = 0.8  # Jaccard similarity of shingle sets
    ngram: int = 3  # character shingles
    seed: int = 1
    index: str = "datasketch"  # datasketch | compact


@dataclass
class DedupResult:
    exact_removed: set = field(default_factory=set)  # item indices
    near_removed: set = field(default_factory=set)
    kept_instead: dict = field(default_factory=dict)  # removed index -> index of the member kept


class _Reps:
    """Fingerprints of group representatives, in fixed-size blocks, and each group's best member.

    Only the low 16 bits of each MinHash value are kept for verification (b-bit MinHash): two
    different values then agree with probability 2^-16, which moves a Jaccard estimate by < 0.0001
    and quarters the memory of the largest structure here.
    """

    BLOCK = 1 << 16

    def __init__(self, num_perm: int):
        self.num_perm = num_perm
        self.blocks: list[np.ndarray] = []
        self.count = 0
        self.best: list[tuple[int, float]] = []  # per representative: (item index, quality)

    def add(self, sig: np.ndarray, index: int, quality: float) -> int:
        if self.count == len(self.blocks) * self.BLOCK:
            self.blocks.append(np.empty((self.BLOCK, self.num_perm), dtype=np.uint16))
        self.blocks[-1][self.count % self.BLOCK] = sig.astype(np.uint16)
        self.best.append((index, quality))
        self.count += 1
        return self.count - 1

    def similarity(self, reps: list[int], sig: np.ndarray) -> np.ndarray:
        rows = np.stack([self.blocks[r // self.BLOCK][r % self.BLOCK] for r in reps])
        return (rows == sig.astype(np.uint16)).mean(axis=1)


class _BandIndex:
    """`index: compact`: one dict per band, from a 64-bit key of the band's values to a representative."""

    def __init__(self, bands: int, rows: int, seed: int):
        self.bands, self.rows = bands, rows
        rng = np.random.default_rng(seed)
        self.mult = rng.integers(1, 2**63, size=(bands, rows), dtype=np.uint64) | np.uint64(1)
        self.tables = [dict() for _ in range(bands)]

    def keys(self, sigs: np.ndarray) -> np.ndarray:
        banded = sigs[:, : self.bands * self.rows].astype(np.uint64).reshape(len(sigs), self.bands, self.rows)
        return (banded * self.mult).sum(axis=2)  # wraps mod 2^64: a universal hash of each band

    def query(self, keys) -> list[int]:
        return list({t[k] for t, k in zip(self.tables, keys.tolist()) if k in t})

    def insert(self, keys, rep: int) -> None:
        for table, key in zip(self.tables, keys.tolist()):
            table.setdefault(key, rep)


class _DatasketchIndex:
    """`index: datasketch`: datasketch's MinHashLSH over LeanMinHash objects of the same signatures."""

    def __init__(self, params: MinHashParams):
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
        self.seed = params.seed

    def _lean(self, sig):
        from datasketch import LeanMinHash

        return LeanMinHash(seed=self.seed, hashvalues=sig, scheme="affine32")

    def query(self, sig) -> list[int]:
        return self.lsh.query(self._lean(sig))

    def insert(self, sig, rep: int) -> None:
        self.lsh.insert(rep, self._lean(sig), check_duplication=False)


def _exact_pass(items: Iterable[tuple[str, float]], result: DedupResult) -> int:
    best: dict[bytes, tuple[int, float]] = {}
    count = 0
    for index, (text, quality) in enumerate(items):
        count += 1
        key = exact_key(text)
        if key not in best:
            best[key] = (index, quality)
            continue
        kept, kept_quality = best[key]
        if quality > kept_quality:  # ties keep the earlier item
            result.exact_removed.add(kept)
            result.kept_instead[kept] = index
            best[key] = (index, quality)
        else:
            result.exact_removed.add(index)
            result.kept_instead[index] = kept
    return count


def deduplicate(items: Callable[[], Iterable[tuple[str, float]]], params: MinHashParams,
                workers: int = 1, chunk_size: int = 2048) -> DedupResult:
    """Indices (in `items()` order) of exact and near duplicates to drop; `items` is read twice."""
    from datasketch import MinHashLSH

    result = DedupResult()
    total = _exact_pass(items(), result)
    perms = permutations(params.num_perm, params.seed)
    lsh_shape = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    bands, rows = lsh_shape.b, lsh_shape.r
    if params.index == "compact":
        index = _BandIndex(bands, rows, params.seed)
    elif params.index == "datasketch":
        index = _DatasketchIndex(params)
    else:
        raise ValueError(f"dedup index '{params.index}': use datasketch or compact")
    reps = _Reps(params.num_perm)

    survivors = ((i, t, q) for i, (t, q) in enumerate(items()) if i not in result.exact_removed)
    chunks = iter(lambda: list(itertools.islice(survivors, chunk_size)), [])
    sig_chunks = signed_chunks(chunks, perms, params.ngram, workers)
    try:
        for chunk, sigs in sig_chunks:
            band_keys = index.keys(sigs) if params.index == "compact" else None
            for row, (item, quality) in enumerate(chunk):
                sig = sigs[row]
                found = index.query(band_keys[row] if band_keys is not None else sig)
                rep = _closest(found, sig, reps, params.threshold)
                if rep is None:
                    new = reps.add(sig, item, quality)
                    index.insert(band_keys[row] if band_keys is not None else sig, new)
                    continue
                kept, kept_quality = reps.best[rep]
                if quality > kept_quality:
                    result.near_removed.add(kept)
                    result.kept_instead[kept] = item
                    reps.best[rep] = (item, quality)
                else:
                    result.near_removed.add(item)
                    result.kept_instead[item] = kept
    finally:
        sig_chunks.close()  # stops the worker pool even when the loop above raised
    log.info("dedup: %d items, %d exact and %d near duplicates (b=%d, r=%d, %s index)", total,
             len(result.exact_removed), len(result.near_removed), bands, rows, params.index)
    return result


def _closest(candidates: list[int], sig: np.ndarray, reps: _Reps, threshold: float) -> int | None:
    if not candidates:
        return None
    similarity = reps.similarity(candidates, sig)
    best = int(np.argmax(similarity))
    return candidates[best] if similarity[best] >= threshold else None
