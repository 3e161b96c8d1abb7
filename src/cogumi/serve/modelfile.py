"""`python serve.py stage=modelfile`: an Ollama `Modelfile` next to the GGUF (template, parameters, system).

The artifact holds `gguf/<file>.gguf` (a hard link when the file system allows, else a copy) and a
`Modelfile` whose `FROM ./gguf/<file>.gguf` makes the folder self-contained:
`ollama create cogumi-smollm2 -f Modelfile`. llama.cpp users load the same GGUF directly.
"""

import logging
import os
import re
import shutil
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.hashing import sha256_file
from cogumi.stage import StageContext

log = logging.getLogger(__name__)

# Ollama templates are Go templates, not Jinja: the chat formats we ship are translated here.
CHATML = ('{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
          '{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
          '<|im_start|>assistant\n')
LLAMA3 = ('{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}'
          '{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>'
          '{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n')
FORMATS = {"<|im_start|>": (CHATML, ["<|im_end|>"]), "<|start_header_id|>": (LLAMA3, ["<|eot_id|>"])}


def gguf_chat_template(gguf: Path) -> str:
    """The Jinja chat template stored in the GGUF (read with the vocabulary only: no weights)."""
    from llama_cpp import Llama

    llm = Llama(str(gguf), vocab_only=True, verbose=False)
    return llm.metadata.get("tokenizer.chat_template", "")


def render_modelfile(gguf_name: str, jinja_template: str, system: str | None, temperature: float, top_p: float,
                     num_ctx: int, source_note: str) -> str:
    template, stops = next(((t, s) for marker, (t, s) in FORMATS.items() if marker in jinja_template), (None, []))
    if system is None:  # the template's own default system prompt, if it has one (SmolLM2 does)
        found = re.search(r"<\|im_start\|>system(?:\\n|\n)(.+?)<\|im_end\|>", jinja_template)
        system = found.group(1) if found else None
    lines = [f"# Ollama Modelfile written by Cogumi from {source_note}", f"FROM ./gguf/{gguf_name}"]
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    else:  # an unknown format: Ollama falls back to the template stored in the GGUF
        lines.append("# TEMPLATE omitted: chat format not recognised; Ollama uses the GGUF's own template")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER temperature {temperature}", f"PARAMETER top_p {top_p}", f"PARAMETER num_ctx {num_ctx}"]
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return "\n".join(lines) + "\n"


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def run(ctx: StageContext, model: str, system: str | None, temperature: float, top_p: float,
        num_ctx: int) -> Artifact:
    from cogumi.serve.model_source import resolve_gguf

    if not 0 <= temperature <= 2 or not 0 < top_p <= 1:
        raise ConfigError(f"stage.run.temperature={temperature} / top_p={top_p}: expected 0..2 and (0, 1]")
    served = resolve_gguf(model, ctx.model, ctx.store)
    inputs = {"gguf": served.path}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous
    jinja_template = gguf_chat_template(served.path)
    with ctx.create_artifact(inputs) as out:
        _link_or_copy(served.path, out.dir / "gguf" / served.path.name)
        source = served.artifact.ref if served.artifact else str(served.path)
        text = render_modelfile(served.path.name, jinja_template, system, temperature, top_p, num_ctx, source)
        (out.dir / "Modelfile").write_text(text)
        out.metrics.update({"gguf_bytes": served.path.stat().st_size,
                            "template": "translated" if "TEMPLATE \"\"\"" in text else "from-gguf"})
        out.extra["gguf"] = {"source": source, "sha256": sha256_file(served.path)}
        log.info("Modelfile for %s: ollama create <name> -f %s", served.name, out.dir / "Modelfile")
    return out.artifact
