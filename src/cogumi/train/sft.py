"""`train.py stage=sft`: LoRA/QLoRA supervised fine-tuning on a curated dataset artifact."""

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.stage import StageContext
from cogumi.train.examples import read_records
from cogumi.train.finetune import finetune, settings_from


def dataset_split(ctx: StageContext, ref: str, split: str, limit: int | None):
    """(artifact, records) of `<split>.jsonl` in a dataset artifact, the first `limit` records."""
    artifact = ctx.store.resolve(ref)
    path = artifact.file(f"{split}.jsonl")
    if not path.is_file():
        raise ConfigError(f"dataset '{ref}' ({artifact.path}) has no {split}.jsonl: is it a dataset artifact?")
    records = read_records(path)
    return artifact, records[:limit] if limit is not None else records


def run(ctx: StageContext, model: str, dataset: str, max_train_records: int | None, max_val_records: int | None,
        **knobs) -> Artifact:
    settings = settings_from(ctx.stage, knobs)  # knob mistakes first, before any file is read
    artifact, train = dataset_split(ctx, dataset, "train", max_train_records)
    _, val = dataset_split(ctx, dataset, "val", max_val_records)
    inputs = {"model": ctx.model_input(model).identity, "dataset": artifact}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous
    return finetune(ctx, model, train, val, inputs, settings)
