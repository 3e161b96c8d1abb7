"""zstd packing of a model file with a dictionary trained on the file's own blocks, and streaming unpack.

Layout of a pack: `<name>.zst` is a sequence of independent zstd frames, one per `block_size` bytes
of the input, each compressed with `<name>.zst.dict` (so `zstd -D <dict> -d` reads it too);
`<name>.zst.json` records the level, block size, sizes and the sha256 of the original and packed
files. Unpacking hashes both while it streams and writes the output only if both hashes match.
"""

import hashlib
import json
import logging
import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from cogumi.errors import ArtifactError, ConfigError

log = logging.getLogger(__name__)

_READ = 1 << 20


@dataclass(frozen=True)
class PackRecord:
    source_name: str
    source_size: int
    source_sha256: str
    packed_size: int
    packed_sha256: str
    level: int
    block_size: int
    dict_size: int

    @property
    def ratio(self) -> float:
        return self.packed_size / self.source_size


def sidecar_of(packed: Path) -> Path:
    return packed.with_name(packed.name + ".json")


def dictionary_of(packed: Path) -> Path:
    return packed.with_name(packed.name + ".dict")


def train_dictionary(source: Path, dict_size: int, samples: int, sample_size: int, seed: int = 0):
    """A zstd dictionary from `samples` slices spread over the file (deterministic for a seed)."""
    import zstandard

    size = source.stat().st_size
    rng = random.Random(seed)
    offsets = sorted(rng.randrange(0, max(1, size - sample_size)) for _ in range(samples))
    with open(source, "rb") as handle:
        chunks = []
        for offset in offsets:
            handle.seek(offset)
            chunks.append(handle.read(sample_size))
    return zstandard.train_dictionary(dict_size, chunks, threads=-1)


def pack_file(source: Path, packed: Path, level: int, block_size: int, dict_size: int, samples: int,
              sample_size: int) -> PackRecord:
    """Write `packed` (+ .dict, + .json) from `source`, then prove it unpacks to the same bytes."""
    import zstandard

    if not 1 <= level <= 22:
        raise ConfigError(f"stage.run.level={level}: zstd levels run from 1 to 22")
    if block_size < 64 * 1024:
        raise ConfigError(f"stage.run.block_size_mb gives {block_size} bytes: use at least 64 KiB blocks")
    dictionary = train_dictionary(source, dict_size, samples, sample_size)
    dictionary_of(packed).write_bytes(dictionary.as_bytes())
    compressor = zstandard.ZstdCompressor(level=level, dict_data=dictionary, write_checksum=True)
    source_hash, packed_hash = hashlib.sha256(), hashlib.sha256()
    with open(source, "rb") as src, open(packed, "wb") as dst:
        while block := src.read(block_size):
            source_hash.update(block)
            frame = compressor.compress(block)
            packed_hash.update(frame)
            dst.write(frame)
    record = PackRecord(source.name, source.stat().st_size, source_hash.hexdigest(), packed.stat().st_size,
                        packed_hash.hexdigest(), level, block_size, len(dictionary.as_bytes()))
    sidecar_of(packed).write_text(json.dumps(asdict(record), indent=2))
    verify_pack(packed)  # round trip before anyone calls it an artifact
    log.info("packed %s: %.1f MB -> %.1f MB (%.1f %%)", source.name, record.source_size / 1e6,
             record.packed_size / 1e6, 100 * record.ratio)
    return record


def read_record(packed: Path) -> PackRecord:
    sidecar = sidecar_of(packed)
    if not sidecar.is_file() or not dictionary_of(packed).is_file():
        raise ArtifactError(f"{packed}: missing {sidecar.name} or {dictionary_of(packed).name} next to it")
    return PackRecord(**json.loads(sidecar.read_text()))


class _HashingReader:
    """File reader that hashes what passes through it (the packed file is read once)."""

    def __init__(self, handle):
        self.handle, self.digest = handle, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def unpack_stream(packed: Path, sink) -> PackRecord:
    """Decompress `packed` into the binary stream `sink`; raise ArtifactError on any sha256 mismatch."""
    import zstandard

    record = read_record(packed)
    dictionary = zstandard.ZstdCompressionDict(dictionary_of(packed).read_bytes())
    out_hash = hashlib.sha256()
    with open(packed, "rb") as handle:
        reader = _HashingReader(handle)
        try:
            stream = zstandard.ZstdDecompressor(dict_data=dictionary).stream_reader(reader, read_across_frames=True)
            while chunk := stream.read(_READ):
                out_hash.update(chunk)
                sink.write(chunk)
            while reader.read(_READ):  # hash any trailing bytes the decompressor did not need
                pass
        except zstandard.ZstdError as err:
            raise ArtifactError(f"{packed}: corrupt zstd data ({err}); packed sha256 expected "
                                f"{record.packed_sha256}, got {reader.digest.hexdigest()}") from err
    if reader.digest.hexdigest() != record.packed_sha256:
        raise ArtifactError(f"{packed}: sha256 mismatch, the packed file is corrupt "
                            f"(expected {record.packed_sha256}, got {reader.digest.hexdigest()})")
    if out_hash.hexdigest() != record.source_sha256:
        raise ArtifactError(f"{packed}: unpacked data sha256 {out_hash.hexdigest()} does not match the "
                            f"original {record.source_sha256}")
    return record


class _NullSink:
    def write(self, data: bytes) -> int:
        return len(data)


def verify_pack(packed: Path) -> PackRecord:
    """Round-trip check without writing anything: both hashes must match the sidecar."""
    return unpack_stream(packed, _NullSink())


def unpack_file(packed: Path, target: Path) -> Path:
    """Stream `packed` into `target` atomically: a failed check leaves no output file behind."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as sink:
            unpack_stream(Path(packed), sink)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def unpacked_gguf(path: str | Path) -> Path:
    """The runtime's loader hook: a `.gguf` as is; a `.gguf.zst` unpacked once into the cache (by sha256)."""
    from cogumi.paths import cache_dir

    path = Path(path)
    if not path.name.endswith(".zst"):
        return path
    record = read_record(path)
    target = cache_dir() / "unpacked" / f"{record.source_sha256[:16]}-{record.source_name}"
    if not target.is_file() or target.stat().st_size != record.source_size:
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("unpacking %s -> %s", path, target)
        unpack_file(path, target)
    return target
