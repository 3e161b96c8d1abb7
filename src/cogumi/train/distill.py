"""`train.py stage=distill`: fine-tune the SFT student on failure-targeted data (the evaluate stage's set).

Same LoRA code as `sft`, on the SFT model, at a lower learning rate, with a slice of the original
SFT data replayed alongside so the fix for the failures does not cost the general skills.
"""

import logging
import random

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.stage import StageContext
from cogumi.train.finetune import finetune, settings_from
from cogumi.train.sft import dataset_split

log = logging.getLogger(__name__)


def with_replay(targeted: list[dict], replay: list[dict], fraction: float, seed: int) -> list[dict]:
    """`targeted` plus replayed records making up `fraction` of the mix, shuffled deterministically."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"conf/stage/distill.yaml: run.replay_fraction={fraction} must be in [0, 1)")
    wanted = round(len(targeted) * fraction / (1 - fraction))
    rng = random.Random(seed)
    mix = targeted + rng.sample(replay, min(wanted, len(replay)))
    rng.shuffle(mix)
    return mix


def run(ctx: StageContext, model: str, dataset: str, replay_dataset: str | None, replay_fraction: float,
        max_train_records: int | None, max_val_records: int | None, **knobs) -> Artifact:
    settings = settings_from(ctx.stage, knobs)
    artifact, targeted = dataset_split(ctx, dataset, "train", max_train_records)
    _, val = dataset_split(ctx, dataset, "val", max_val_records)
    inputs = {"model": ctx.model_input(model).identity, "dataset": artifact}
    train = targeted
    if replay_dataset and replay_fraction > 0:
        replay_artifact, replay = dataset_split(ctx, replay_dataset, "train", None)
        inputs["replay"] = replay_artifact
        train = with_replay(targeted, replay, replay_fraction, settings.seed)
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous
    log.info("distilling on %d targeted + %d replayed records", len(targeted), len(train) - len(targeted))
    return finetune(ctx, model, train, val, inputs, settings,
                    extra={"targeted_records": len(targeted), "replayed_records": len(train) - len(targeted)})
