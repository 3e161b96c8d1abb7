"""Small inputs for the training tests and benchmarks: a demo dataset artifact and a tiny Llama.

The demo dataset is Alpaca-format pairs shipped in the llamafactory sdist (shared/DATASETS.md),
written in the curate schema, so the training stages can be exercised without the curate stage.
"""

import json
from pathlib import Path

from cogumi.artifacts import Artifact, ArtifactStore

ALPACA_DEMO = ("llamafactory", "data/alpaca_en_demo.json")


def alpaca_records(limit: int | None = None) -> list[dict]:
    from cogumi.assets import data_file

    path = data_file(*ALPACA_DEMO)
    rows = json.loads(Path(path).read_text())[:limit]
    records = []
    for index, row in enumerate(rows):
        instruction = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        records.append({"id": f"alpaca-demo-{index}", "instruction": instruction, "response": row["output"],
                        "metadata": {"domain": "general", "source": "llamafactory==0.9.5:data/alpaca_en_demo.json",
                                     "teacher": None, "difficulty": None, "quality_score": None, "tokens": None}})
    return records


def write_dataset_artifact(store: ArtifactStore, train: list[dict], val: list[dict],
                           stage: str = "curate") -> Artifact:
    """A dataset artifact (train.jsonl / val.jsonl) in `store`, as the curate stage would write it."""
    from cogumi.hashing import sha256_json

    fingerprint = sha256_json({"train": train, "val": val})
    with store.create(stage, fingerprint, {"source": "cogumi.train.fixtures"}, []) as out:
        for split, records in (("train", train), ("val", val)):
            with (out.dir / f"{split}.jsonl").open("w") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in records)
        out.metrics.update({"train_records": len(train), "val_records": len(val)})
    return out.artifact


def demo_dataset(store: ArtifactStore, n_train: int, n_val: int, stage: str = "curate") -> Artifact:
    records = alpaca_records(n_train + n_val)
    return write_dataset_artifact(store, records[:n_train], records[n_train:], stage)


def write_tiny_llama(dest: Path, tokenizer_source: Path, layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """A randomly initialised Llama with the embedded student's tokenizer (fast unit-test model)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(dest))
    tokenizer.save_pretrained(str(dest))
    return dest
