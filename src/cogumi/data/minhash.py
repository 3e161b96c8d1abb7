"""MinHash signatures of character shingles, datasketch-compatible, for many documents at once.

Bit for bit datasketch's `affine32` MinHash with an identity hashfunc over our 32-bit shingle hashes
(tests/test_dedup.py checks it), computed in numpy over batches of documents and, for large inputs,
in worker processes: datasketch hashes shingle by shingle in Python, which is ~20x slower.
"""

import collections
import hashlib
import multiprocessing as mp

import numpy as np

_PRIME = np.uint64(1_000_003)


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


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
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


def signed_chunks(chunks, perms, ngram: int, workers: int):
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
