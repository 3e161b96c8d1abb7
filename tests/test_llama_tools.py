"""llama.cpp tools: found only when a complete build of the installed version is in the cache."""

import json
import subprocess

import pytest

from cogumi import llama_tools
from cogumi.errors import AssetMissingError, ConfigError


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COGUMI_CACHE", str(tmp_path))
    return tmp_path


def _fake_build(version: str) -> None:
    """What `_install` leaves behind after a finished build, without compiling anything."""
    llama_tools.tools_dir().mkdir(parents=True)
    for name in llama_tools.TOOLS:
        (llama_tools.tools_dir() / name).write_text("#!/bin/sh\n")
    (llama_tools.tools_dir() / "build.json").write_text(json.dumps({"llama_cpp_python": version}))


def test_missing_tool_names_the_fix(empty_cache):
    with pytest.raises(AssetMissingError, match=r"llama-server is not built: run `make setup`"):
        llama_tools.tool_path("llama-server")
    assert not llama_tools.tools_built()


def test_unknown_tool_is_a_config_error(empty_cache):
    with pytest.raises(ConfigError, match="llama-bench"):
        llama_tools.tool_path("llama-bench")


def test_finished_build_is_found(empty_cache):
    _fake_build(llama_tools.llama_cpp_version())
    assert llama_tools.tools_built()
    assert llama_tools.tool_path("llama-imatrix") == empty_cache / "llama.cpp" / "bin" / "llama-imatrix"


def test_build_of_another_llama_cpp_version_is_rebuilt(empty_cache):
    _fake_build("0.0.1")
    assert not llama_tools.tools_built()


def test_interrupted_build_is_not_complete(empty_cache):
    """Binaries in the cmake build folder but no installed bin/ folder: a build that stopped midway."""
    (llama_tools.build_dir() / "bin").mkdir(parents=True)
    (llama_tools.build_dir() / "bin" / "llama-server").write_text("")
    assert not llama_tools.tools_built()
    with pytest.raises(AssetMissingError, match="missing"):
        llama_tools.build_tools()  # no sources either: says so instead of half-building


def test_install_is_all_or_nothing(empty_cache):
    (llama_tools.build_dir() / "bin").mkdir(parents=True)
    for name in llama_tools.TOOLS[:-1]:
        (llama_tools.build_dir() / "bin" / name).write_text("")
    with pytest.raises(AssetMissingError, match=llama_tools.TOOLS[-1]):
        llama_tools._install(1.0)
    assert not llama_tools.tools_dir().exists()
    assert [p.name for p in llama_tools.root_dir().iterdir()] == ["build"]


@pytest.mark.slow
def test_built_quantize_runs_from_the_real_cache():
    """The setup's real build: the binary starts and is the llama.cpp tool (its usage names the types)."""
    quantize = llama_tools.tool_path("llama-quantize")
    result = subprocess.run([str(quantize), "--help"], capture_output=True, text=True, timeout=60)
    assert "Q4_K_M" in result.stdout + result.stderr
