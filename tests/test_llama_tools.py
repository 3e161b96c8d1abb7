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


# Lines of a real llama-quantize log (Q4_K_M of SmolLM2-135M): norms are copied, 576-wide rows fall back.
QUANTIZE_LOG = """
warning: blk.0.attn_q.weight                  - ncols    576 not divisible by 256 (required for type    q4_K) -> falling back to    q5_0
[   1/ 272] output_norm.weight                   - [   576,      1,      1,      1], type =    f32, size =    0.002 MiB
[   2/ 272] token_embd.weight                    - [   576,  49152,      1,      1], type =    f16, converting to q8_0 .. size =    54.00 MiB ->    28.69 MiB
[   6/ 272] blk.0.attn_q.weight                  - [   576,   576,      1,      1], type =    f16, converting to q5_0 .. size =     0.63 MiB ->     0.22 MiB
[   8/ 272] blk.0.ffn_down.weight                - [  1536,   576,      1,      1], type =    f16, converting to q6_K .. size =     1.69 MiB ->     0.69 MiB
[  17/ 272] blk.1.ffn_down.weight                - [  1536,   576,      1,      1], type =    f16, converting to q4_K .. size =     1.69 MiB ->     0.53 MiB
[ 218/ 272] blk.23.attn_q.weight                 - [   576,   576,      1,      1], type =    f16, converting to q5_0 .. size =     0.63 MiB ->     0.22 MiB
llama_model_quantize_impl: WARNING: 180 of 272 tensor(s) required fallback quantization
"""


def test_quantize_log_gives_each_tensors_written_type_and_the_mix_per_role():
    from cogumi.compress.llama_cli import tensor_types, type_mix

    types = tensor_types(QUANTIZE_LOG)
    assert types == {"output_norm.weight": "f32", "token_embd.weight": "q8_0", "blk.0.attn_q.weight": "q5_0",
                     "blk.0.ffn_down.weight": "q6_k", "blk.1.ffn_down.weight": "q4_k", "blk.23.attn_q.weight": "q5_0"}
    assert type_mix(types) == {"attn_q": {"q5_0": 2}, "ffn_down": {"q4_k": 1, "q6_k": 1}, "output_norm": {"f32": 1},
                               "token_embd": {"q8_0": 1}}
