"""`python -m cogumi publish <ref> --repo <id>`: upload an artifact's GGUF, Modelfile and manifest to
the Hugging Face Hub. Real upload code; offline (HF_HUB_OFFLINE=1 or no network) it fails in one line."""

import json
import logging
import os
from pathlib import Path

from cogumi.artifacts import ArtifactStore
from cogumi.errors import CogumiError, ConfigError
from cogumi.paths import outputs_dir

log = logging.getLogger(__name__)
UPLOADED = ["*.gguf", "gguf/*.gguf", "Modelfile", "manifest.json"]


class PublishError(CogumiError):
    """The upload could not happen (offline, no token, hub refused)."""


def model_card(folder: Path, repo: str) -> str:
    manifest = json.loads((folder / "manifest.json").read_text()) if (folder / "manifest.json").is_file() else {}
    ggufs = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf"))
    lines = [f"# {repo.split('/')[-1]}", "", "GGUF weights produced by [Cogumi](https://github.com/) "
             f"(stage `{manifest.get('stage', '?')}`, artifact `{manifest.get('name', folder.name)}`).", "",
             "| file | |", "|---|---|"] + [f"| `{g}` | llama.cpp / Ollama |" for g in ggufs]
    if (folder / "Modelfile").is_file():
        lines += ["", "Ollama: `ollama create <name> -f Modelfile`"]
    if manifest.get("metrics"):
        lines += ["", "Metrics from the manifest:", "```json", json.dumps(manifest["metrics"], indent=2), "```"]
    return "\n".join(lines) + "\n"


def publish(ref: str, repo: str, private: bool = False, token: str | None = None,
            revision: str | None = None) -> str:
    """Upload and return the commit URL."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(ref) if Path(ref).is_dir() else ArtifactStore(outputs_dir() / "artifacts").resolve(ref).path
    if not any(folder.rglob("*.gguf")):
        raise ConfigError(f"'{ref}' ({folder}) holds no .gguf file to publish")
    if "/" not in repo:
        raise ConfigError(f"--repo '{repo}': expected '<user or org>/<name>'")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise PublishError("HF_HUB_OFFLINE=1: this machine is offline; unset it on a machine that reaches "
                           "huggingface.co to publish")
    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN, pass --token, or run `hf auth login`")
    # The card is generated into memory: an artifact folder is a finished record and is not edited.
    card = model_card(folder, repo).encode()
    api = HfApi(token=token)
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id=repo, revision=revision)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo, revision=revision,
                                   allow_patterns=UPLOADED, commit_message=f"Cogumi: {folder.name}")
    except OfflineModeIsEnabled as err:
        raise PublishError(f"offline mode: {err}")
    except HfHubHTTPError as err:
        raise PublishError(f"the hub refused the upload to '{repo}': {str(err).splitlines()[0]}")
    except OSError as err:  # DNS/connection failures surface as OSError subclasses (httpx, requests)
        raise PublishError(f"cannot reach the hub to publish '{repo}': {err}")
    except Exception as err:  # httpx.ConnectError and friends are not OSError in every version
        if "connect" in type(err).__name__.lower() or "timeout" in type(err).__name__.lower():
            raise PublishError(f"cannot reach the hub to publish '{repo}': {err}")
        raise
    log.info("published %s to https://huggingface.co/%s (%s)", folder, repo, commit)
    return str(commit)
