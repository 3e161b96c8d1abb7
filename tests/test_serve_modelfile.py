"""Ollama Modelfile export next to the GGUF, and `python -m cogumi publish` failing clearly offline."""

import json
import os
import subprocess
import sys

from conftest import run_entry

from cogumi.hashing import sha256_file
from cogumi.paths import PROJECT_ROOT
from cogumi.serve.modelfile import render_modelfile

SMOL_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\nYou are SmolLM<|im_end|>\n' }}{% endif %}...")


def test_render_translates_chatml_and_keeps_the_default_system_prompt():
    text = render_modelfile("x.gguf", SMOL_TEMPLATE, None, 0.2, 0.9, 1024, "test")
    assert "FROM ./gguf/x.gguf" in text and 'SYSTEM """You are SmolLM"""' in text
    assert "<|im_start|>{{ .Role }}" in text and 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER num_ctx 1024" in text and "PARAMETER temperature 0.2" in text
    unknown = render_modelfile("x.gguf", "{{ messages }}", "Be brief.", 0.7, 0.95, 2048, "test")
    assert "TEMPLATE omitted" in unknown and 'SYSTEM """Be brief."""' in unknown and "stop" not in unknown


def _cogumi(*args, env):
    return subprocess.run([sys.executable, "-m", "cogumi", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_modelfile_stage_writes_gguf_and_modelfile_and_publish_fails_clearly_offline(outputs, embedded_model):
    (outputs / "serve").mkdir(parents=True)
    result = run_entry("serve", "stage=modelfile", "logger=none", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = next((outputs / "artifacts" / "modelfile").glob("*/"))
    assert sha256_file(folder / "gguf" / "source.gguf") == sha256_file(embedded_model / "source.gguf")
    modelfile = (folder / "Modelfile").read_text()
    assert modelfile.splitlines()[1] == "FROM ./gguf/source.gguf" and "SmolLM" in modelfile
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {o["path"] for o in manifest["outputs"]} == {"Modelfile", "gguf/source.gguf"}

    env = {**os.environ, "COGUMI_OUTPUTS": str(outputs), "HF_HUB_OFFLINE": "1"}
    offline = _cogumi("publish", "latest:modelfile", "--repo", "someone/cogumi-test", env=env)
    assert offline.returncode == 1 and "offline" in offline.stderr and "Traceback" not in offline.stderr
    no_gguf = _cogumi("publish", str(outputs / "serve"), "--repo", "someone/cogumi-test", env=env)
    assert no_gguf.returncode == 2 and "no .gguf" in no_gguf.stderr
