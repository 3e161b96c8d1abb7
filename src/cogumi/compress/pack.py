"""`compress.py stage=pack`: zstd-pack the GGUF files of a gguf artifact, verified by round trip.

GGUF stores pruned zeros densely, so this is where sparsity can show on disk: the ratio of a packed
pruned model against a packed dense one is reported by the benchmark. Load a pack with
`cogumi.compress.zstd_pack.unpacked_gguf` or unpack it with `python -m cogumi unpack`.
"""

import logging

from cogumi.artifacts import Artifact
from cogumi.compress.zstd_pack import pack_file
from cogumi.errors import ConfigError
from cogumi.stage import StageContext

log = logging.getLogger(__name__)


def _selected(gguf_artifact: Artifact, types: list[str] | None) -> list:
    available = {p.name.removesuffix(".gguf"): p for p in sorted(gguf_artifact.file("gguf").glob("*.gguf"))}
    if not available:
        raise ConfigError(f"stage.run.gguf={gguf_artifact.ref}: no gguf/*.gguf files in that artifact")
    if types is None:
        return list(available.values())
    missing = [t for t in types if t not in available]
    if missing:
        raise ConfigError(f"stage.run.types: {missing} not in {gguf_artifact.ref} (it has {sorted(available)})")
    return [available[t] for t in types]


def run(ctx: StageContext, gguf: str, types: list[str] | None, level: int, block_size_mb: float,
        dict_size_kb: int, dict_samples: int, dict_sample_kb: int) -> Artifact:
    gguf_artifact = ctx.store.resolve(gguf)
    files = _selected(gguf_artifact, [str(t).upper() for t in types] if types is not None else None)
    if not 1 <= level <= 22:
        raise ConfigError(f"stage.run.level={level}: zstd levels run from 1 to 22")
    inputs = {"gguf": gguf_artifact}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    with ctx.create_artifact(inputs) as out:
        packed_dir = out.dir / "packed"
        packed_dir.mkdir()
        records = {}
        for source in files:
            record = pack_file(source, packed_dir / f"{source.name}.zst", level, int(block_size_mb * (1 << 20)),
                               dict_size_kb * 1024, dict_samples, dict_sample_kb * 1024)
            name = source.name.removesuffix(".gguf")
            records[name] = record
            out.metrics.update({f"{name}/source_mb": round(record.source_size / 1e6, 2),
                                f"{name}/packed_mb": round(record.packed_size / 1e6, 2),
                                f"{name}/ratio": round(record.ratio, 4)})
        out.extra["pack"] = {name: {"source_sha256": r.source_sha256, "packed_sha256": r.packed_sha256,
                                    "verified_round_trip": True} for name, r in records.items()}
    return out.artifact
