"""Exact then near-duplicate removal (MinHash LSH), keeping the higher-quality member of each group.

Signatures are datasketch's `affine32` MinHash of character n-gram shingles, bit for bit (the test
checks it against `datasketch.MinHash`), but computed for many documents at once in numpy across
worker processes: datasketch hashes shingle by shingle in Python, which is ~20x slower. The bucket
index is datasketch's `MinHashLSH` (`index: datasketch`) or a compact dict of band keys with the same
(b, r) banding (`index: compact`, ~4x less memory). Candidates are verified on the signatures
(estimated Jaccard >= threshold) before an item is dropped.

Streaming: items come from a callable that re-reads them (twice: exact, then near); only hashes,
signatures of group representatives and the index are held, never the texts.
"""

import collections
import hashlib
import itertools
import logging
import multiprocessing as mp
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

_PRIME = np.uint64(1_000_003)


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


def normalise_text(text: str) -> str:
    return " ".join(text.lower().split())


def exact_key(text: str) -> bytes:
    return hashlib.blake2b(normalise_text(text).encode(), digest_size=12).digest()


def shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """32-bit hashes of the character n-grams of the normalised text (repeats included)."""
    codes = np.frombuffer(normalise_text(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < ngram:  # shorter than one shingle: the whole text is the shingle
        codes = np.concatenate([codes, np.zeros(ngram - len(codes), dtype=np.uint64)])
    h = codes[: len(codes) - ngram + 1].copy()
    for k in range(1, ngram):
        h = h * _PRIME + codes[k: len(codes) - ngram + 1 + k]
    # Repeated shingles are left in: a minimum over a multiset equals the minimum over its set, and
    # np.unique would cost more than the permutations it saves (~100 µs per 1 KB document).
    return (h ^ (h >> np.uint64(32))).astype(np.uint32)


def permutations(params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=params.num_perm, seed=params.seed).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def signatures(texts: list[str], perms: tuple[np.ndarray, np.ndarray], ngram: int) -> np.ndarray:
    """(len(texts), num_perm) uint32: for each permutation, the minimum permuted shingle hash.

    Same arithmetic as datasketch's affine32 scheme with an identity hashfunc: fmix32 pre-mix, then
    a*h + b mod 2^32. Documents are concatenated so one numpy pass serves a whole batch.
    """
    from datasketch.minhash import _fmix

    a, b = perms[0][:, None], perms[1][:, None]
    shingles = [shingle_hashes(t, ngram) for t in texts]
    out = np.empty((len(texts), len(a)), dtype=np.uint32)
    batch = 8  # keeps the (num_perm x shingles) temporary in cache: 3x faster than 128 at 1 KB/doc
    for s in range(0, len(texts), batch):
        part = shingles[s:s + batch]
        offsets = np.cumsum([0] + [len(p) for p in part[:-1]])
        permuted = np.multiply(a, _fmix(np.concatenate(part), 32))
        permuted += b
        out[s:s + len(part)] = np.minimum.reduceat(permuted, offsets, axis=1).T
    return out


_WORKER_PERMS = None


def _init_worker(perms):
    global _WORKER_PERMS
    _WORKER_PERMS = perms


def _worker_signatures(args):
    texts, ngram = args
    return signatures(texts, _WORKER_PERMS, ngram)


class _Reps:
    """Signatures of group representatives in one growable array, and each group's best member."""

    def __init__(self, num_perm: int):
        self.sigs = np.empty((1024, num_perm), dtype=np.uint32)
        self.count = 0
        self.best: list[tuple[int, float]] = []  # per representative: (item index, quality)

    def add(self, sig: np.ndarray, index: int, quality: float) -> int:
        if self.count == len(self.sigs):
            self.sigs = np.concatenate([self.sigs, np.empty_like(self.sigs)])
        self.sigs[self.count] = sig
        self.best.append((index, quality))
        self.count += 1
        return self.count - 1


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
    perms = permutations(params)
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
    sig_chunks = _signed_chunks(chunks, perms, params.ngram, workers)
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


def _signed_chunks(chunks, perms, ngram: int, workers: int):
    """(item indices and qualities, signatures) per chunk, in order; texts are not kept.

    At most 2 chunks per worker are in flight (Pool.imap would read the whole input ahead).
    """
    if workers <= 1:
        for chunk in chunks:
            yield [(i, q) for i, _, q in chunk], signatures([t for _, t, _ in chunk], perms, ngram)
        return
    with mp.get_context("fork").Pool(workers, _init_worker, (perms,)) as pool:
        window = collections.deque()
        for chunk in chunks:
            job = pool.apply_async(_worker_signatures, (([t for _, t, _ in chunk], ngram),))
            window.append(([(i, q) for i, _, q in chunk], job))
            if len(window) > 2 * workers:
                meta, job = window.popleft()
                yield meta, job.get()
        while window:
            meta, job = window.popleft()
            yield meta, job.get()


def _closest(candidates: list[int], sig: np.ndarray, reps: _Reps, threshold: float) -> int | None:
    if not candidates:
        return None
    similarity = (reps.sigs[candidates] == sig).mean(axis=1)
    best = int(np.argmax(similarity))
    return candidates[best] if similarity[best] >= threshold else None
