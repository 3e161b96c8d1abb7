"""The artifact store: atomic folders, manifests, resolution, promotion, skipping unchanged runs."""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cogumi.artifacts import MANIFEST, ArtifactStore, input_record
from cogumi.errors import ArtifactError


def _write(store, stage, payload, config=None, inputs=None):
    inputs = inputs or []
    fingerprint = ArtifactStore.fingerprint(stage, config or {}, inputs)
    with store.create(stage, fingerprint, config or {}, inputs) as out:
        (out.dir / "data.txt").write_text(payload)
        out.metrics["size"] = len(payload)
    return out.artifact


def test_manifest_records_outputs_inputs_and_provenance(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("hello")
    store = ArtifactStore(tmp_path / "artifacts")
    artifact = _write(store, "demo", "payload", {"k": 1}, [input_record("text", source)])
    manifest = json.loads((artifact.path / MANIFEST).read_text())
    assert manifest["outputs"] == [{"path": "data.txt", "size": 7, "sha256": manifest["outputs"][0]["sha256"]}]
    assert manifest["inputs"][0]["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert manifest["config"] == {"k": 1} and manifest["metrics"] == {"size": 7}
    assert manifest["peak_rss_mb"] > 0 and "torch" in manifest["versions"] and "commit" in manifest["git"]
    assert manifest["timings"]["wall_s"] >= 0


def test_failed_block_leaves_no_artifact(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.create("demo", "f" * 64, {}, []) as out:
            (out.dir / "half.bin").write_bytes(b"x")
            raise RuntimeError("stage crashed")
    assert store.artifacts("demo") == []
    assert list((tmp_path / "demo").iterdir()) == []


def test_latest_promoted_and_fingerprint_lookup(tmp_path):
    store = ArtifactStore(tmp_path)
    first = _write(store, "demo", "a", {"v": 1})
    time.sleep(0.01)
    second = _write(store, "demo", "b", {"v": 2})
    assert store.resolve("latest:demo").path == second.path
    assert store.resolve(f"demo/{first.name}").path == first.path
    assert store.find("demo", ArtifactStore.fingerprint("demo", {"v": 1}, [])).path == first.path
    assert store.find("demo", ArtifactStore.fingerprint("demo", {"v": 3}, [])) is None
    store.promote(first, "mvp")
    assert store.resolve("promoted:mvp").path == first.path
    with pytest.raises(ArtifactError, match="no complete artifact of stage 'nothing'"):
        store.resolve("latest:nothing")
    with pytest.raises(ArtifactError, match="nothing promoted"):
        store.resolve("promoted:other")


def test_a_killed_writer_leaves_no_manifest_and_is_cleaned_up(tmp_path):
    """SIGKILL in the middle of writing: nothing looks complete; the next run removes the leftovers."""
    script = textwrap.dedent(f"""
        import time
        from cogumi.artifacts import ArtifactStore
        store = ArtifactStore({str(tmp_path)!r})
        with store.create("demo", "0" * 64, {{}}, []) as out:
            (out.dir / "part.bin").write_bytes(b"x" * 1000)
            print("writing", flush=True)
            time.sleep(60)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    store = ArtifactStore(tmp_path)
    leftovers = list((tmp_path / "demo").glob(".tmp-*"))
    assert len(leftovers) == 1 and not (leftovers[0] / MANIFEST).exists()
    assert store.artifacts("demo") == []
    _write(store, "demo", "complete")
    assert not list((tmp_path / "demo").glob(".tmp-*"))
    assert len(store.artifacts("demo")) == 1


def test_artifacts_cli_lists_and_diffs(outputs):
    from cogumi.artifact_cli import diff_artifacts, list_artifacts

    store = ArtifactStore(outputs / "artifacts")
    a = _write(store, "demo", "one", {"window": 256})
    b = _write(store, "demo", "three", {"window": 128})
    assert [x.name for x in list_artifacts("demo")] == [a.name, b.name]
    differences = diff_artifacts(f"demo/{a.name}", "latest:demo")
    assert differences == {"config.window": (256, 128), "metrics.size": (3, 5)}
