"""Plain text documents for perplexity, fidelity and calibration: `.txt` (one per line) or JSONL."""

from pathlib import Path

from cogumi.errors import AssetMissingError, ConfigError


def read_documents(path: str | Path, text_field: str = "text") -> list[str]:
    """Documents of a text file, through `datasets` so a hub copy or a local file read the same way."""
    from datasets import load_dataset

    path = Path(path)
    if not path.is_file():
        raise AssetMissingError(f"text file {path} is missing: run `make setup` (python -m cogumi setup)")
    builder = {".txt": "text", ".jsonl": "json", ".json": "json"}.get(path.suffix)
    if builder is None:
        raise ConfigError(f"{path}: unsupported text file type '{path.suffix}' (use .txt or .jsonl)")
    rows = load_dataset(builder, data_files=str(path), split="train")
    field = "text" if builder == "text" else text_field
    if field not in rows.column_names:
        raise ConfigError(f"{path}: no field '{field}' (fields: {rows.column_names})")
    return [doc for doc in rows[field] if doc and doc.strip()]
