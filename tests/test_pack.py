"""zstd packing: byte-identical round trip, corruption caught by sha256, CLI unpack, runtime loading."""

import os
import subprocess
import sys

import pytest

from cogumi.compress.zstd_pack import pack_file, read_record, unpack_file, unpacked_gguf, verify_pack
from cogumi.errors import ArtifactError, ConfigError

BLOCK = 64 * 1024


@pytest.fixture
def source(tmp_path):
    """A file with GGUF-like structure: repeated headers, low-entropy and random regions, an odd tail."""
    rng = os.urandom
    parts = [b"GGUF" + bytes(60)] + [b"blk.%d.ffn_up.weight" % i + rng(2000) + bytes(3000) for i in range(200)]
    path = tmp_path / "model.gguf"
    path.write_bytes(b"".join(parts) + rng(777))
    return path


def _pack(source, tmp_path, level=3):
    return pack_file(source, tmp_path / "packed" / "model.gguf.zst", level, BLOCK, 4096, 16, 4096)


@pytest.fixture
def packed(source, tmp_path):
    (tmp_path / "packed").mkdir()
    _pack(source, tmp_path)
    return tmp_path / "packed" / "model.gguf.zst"


def test_round_trip_is_byte_identical(source, packed, tmp_path):
    record = read_record(packed)
    assert record.packed_size < record.source_size  # the zero runs compress
    assert record.source_size > 10 * BLOCK  # several frames, so multi-frame reading is exercised
    out = unpack_file(packed, tmp_path / "out.gguf")
    assert out.read_bytes() == source.read_bytes()


def test_flipped_byte_fails_sha256_with_clear_error(packed, tmp_path):
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0x01
    packed.write_bytes(bytes(data))
    target = tmp_path / "out.gguf"
    with pytest.raises(ArtifactError, match="model.gguf.zst.*(sha256 mismatch|corrupt)"):
        unpack_file(packed, target)
    assert not target.exists()  # nothing half-written is left behind
    assert not list(tmp_path.glob(".out.gguf.*"))


def test_flipped_byte_in_an_unread_tail_still_fails(packed):
    """A byte after the last frame is never decompressed, so only the packed-file hash can catch it."""
    packed.write_bytes(packed.read_bytes() + b"\x00")
    with pytest.raises(ArtifactError, match="sha256"):
        verify_pack(packed)


def test_missing_sidecar_is_a_clear_error(packed):
    packed.with_name(packed.name + ".json").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        verify_pack(packed)


def test_bad_level_rejected_before_work(source, tmp_path):
    with pytest.raises(ConfigError, match="level=30"):
        pack_file(source, tmp_path / "x.zst", 30, BLOCK, 4096, 16, 4096)


def test_cli_unpack_and_runtime_loading(source, packed, tmp_path, monkeypatch):
    out = tmp_path / "cli.gguf"
    result = subprocess.run([sys.executable, "-m", "cogumi", "unpack", str(packed), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == source.read_bytes()

    monkeypatch.setenv("COGUMI_CACHE", str(tmp_path / "cache"))
    loaded = unpacked_gguf(packed)
    assert loaded.suffix == ".gguf" and loaded.read_bytes() == source.read_bytes()
    assert unpacked_gguf(source) == source  # a plain .gguf passes through


def test_cli_unpack_corrupt_file_exits_nonzero(packed, tmp_path):
    data = bytearray(packed.read_bytes())
    data[100] ^= 0xFF
    packed.write_bytes(bytes(data))
    result = subprocess.run([sys.executable, "-m", "cogumi", "unpack", str(packed), "-o", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "cogumi unpack:" in result.stderr and "model.gguf.zst" in result.stderr
    assert "Traceback" not in result.stderr
