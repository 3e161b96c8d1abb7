"""Which GGUF `serve.py stage.run.model=...` loads: base, a path, a gguf artifact, a pack artifact."""

import json
import shutil

import pytest

from cogumi.artifacts import ArtifactStore
from cogumi.errors import ArtifactError, ConfigError
from cogumi.hashing import sha256_file
from cogumi.models.spec import ModelSpec
from cogumi.serve.model_source import resolve_gguf, resolve_served
from cogumi.serve.modifier_catalog import resolve_modifiers


def _artifact(store_root, stage, files: dict):
    folder = store_root / stage / "20260101-000000-abcdef12"
    for relative, source in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / relative)
    (folder / "manifest.json").write_text(json.dumps({"stage": stage, "name": folder.name,
                                                      "created_at": "2026-01-01T00:00:00"}))
    return folder


def test_base_path_and_gguf_artifact(tmp_path, embedded_model):
    gguf = embedded_model / "source.gguf"
    spec = ModelSpec(name="smollm2-135m", hf_id="x", gguf=str(gguf))
    store = ArtifactStore(tmp_path / "artifacts")
    assert resolve_gguf("base", spec, store).path == gguf
    assert resolve_gguf(str(gguf), spec, store).name == "source"
    _artifact(store.root, "gguf", {"gguf/F16.gguf": gguf, "gguf/Q4_K_M.gguf": gguf, "gguf/Q8_0.gguf": gguf})
    served = resolve_gguf("latest:gguf", spec, store)
    assert served.path.name == "Q4_K_M.gguf" and served.name == "smollm2-135m-gguf-q4_k_m"
    assert served.artifact.stage == "gguf"
    with pytest.raises(ConfigError, match="no such file"):
        resolve_gguf(str(tmp_path / "missing.gguf"), spec, store)
    with pytest.raises(ConfigError, match="no `gguf:`"):
        resolve_gguf("base", ModelSpec(name="m", hf_id="x"), store)
    with pytest.raises(ArtifactError):
        resolve_gguf("latest:pack", spec, store)


def test_pack_artifact_is_unpacked_into_the_cache_and_verified(tmp_path, embedded_model, monkeypatch):
    from cogumi.compress.zstd_pack import pack_file

    monkeypatch.setenv("COGUMI_CACHE", str(tmp_path / "cache"))
    gguf = embedded_model / "source.gguf"
    packed = tmp_path / "Q4_K_M.gguf.zst"
    pack_file(gguf, packed, level=3, block_size=4 << 20, dict_size=16 << 10, samples=50, sample_size=4096)
    store = ArtifactStore(tmp_path / "artifacts")
    folder = _artifact(store.root, "pack", {f"packed/{p.name}": p for p in tmp_path.glob("Q4_K_M.gguf.zst*")})
    served = resolve_gguf("latest:pack", ModelSpec(name="smollm2-135m", hf_id="x", gguf=str(gguf)), store)
    assert served.name == "smollm2-135m-pack-q4_k_m" and str(tmp_path / "cache") in str(served.path)
    assert sha256_file(served.path) == sha256_file(gguf)
    assert not any(p.name.endswith(".gguf") for p in (folder / "packed").iterdir())  # the artifact is untouched


def _stored(store, stage, name, files: dict, manifest_extra: dict | None = None, created="2026-01-01T00:00:00"):
    folder = store.root / stage / name
    for relative, text in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    (folder / "manifest.json").write_text(json.dumps({"stage": stage, "name": name, "created_at": created,
                                                      **(manifest_extra or {})}))
    return folder


def test_auto_serves_the_promoted_students_gguf_else_the_latest_else_base(tmp_path):
    base = tmp_path / "base.gguf"
    base.write_text("base")
    spec = ModelSpec(name="smollm2-135m", hf_id="x", gguf=str(base))
    store = ArtifactStore(tmp_path / "artifacts")
    assert resolve_served("auto", spec, store).path == base
    student = _stored(store, "sft", "student", {"model/config.json": "{}"})
    from_student = _stored(store, "gguf", "a", {"gguf/Q4_K_M.gguf": "s"},
                           {"inputs": [{"name": "model", "path": str(student)}]})
    newer = _stored(store, "gguf", "b", {"gguf/Q4_K_M.gguf": "n"}, created="2026-01-02T00:00:00")
    assert resolve_served("auto", spec, store).path == newer / "gguf" / "Q4_K_M.gguf"  # nothing promoted yet
    store.promote(store.resolve(str(student)), "student")
    assert resolve_served("auto", spec, store).path == from_student / "gguf" / "Q4_K_M.gguf"


def test_every_promoted_modifier_is_found_and_a_named_missing_one_is_an_error(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    for domain in ("code", "math"):
        folder = _stored(store, "modifier", domain, {"lora/adapter.gguf": domain},
                         {"modifier": {"domain": domain, "base_gguf": "x"}})
        store.promote(store.resolve(str(folder)), f"modifier-{domain}")
    _stored(store, "modifier", "unpromoted", {"lora/adapter.gguf": "u"}, {"modifier": {"domain": "law"}})
    found = resolve_modifiers("promoted", store)
    assert [(m.domain, m.path.read_text(), m.served_name) for m in found] == [
        ("code", "code", "cogumi/code"), ("math", "math", "cogumi/math")]
    assert resolve_modifiers(None, store) == []
    with pytest.raises(ConfigError, match="stage.run.modifiers.law"):
        resolve_modifiers({"law": str(tmp_path / "missing.gguf")}, store)
