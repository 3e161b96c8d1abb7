"""`train.py stage=recovery`: after compression, fine-tune on what the compressed model lost most.

The seeds' recovery step: score a dataset under the compressed model, keep the worst-perplexity
`fraction` (10 %) of records and fine-tune on them with LoRA. With `keep_zeros` the merged weights
keep the pruned zeros, so a sparse model stays sparse (a dense LoRA update would fill them in).
"""

import logging
import math

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.stage import StageContext
from cogumi.train.examples import encode_conversation, record_messages, unpacked_rows
from cogumi.train.finetune import finetune, settings_from
from cogumi.train.sft import dataset_split

log = logging.getLogger(__name__)


def reply_losses(model, tokenizer, records: list[dict], seq_len: int, batch_size: int) -> list[float]:
    """Mean next-token loss over each record's reply tokens (inf for records with none in `seq_len`)."""
    import torch
    from tqdm.auto import tqdm

    from cogumi.train.datamodule import collate_rows

    encoded = [encode_conversation(tokenizer, record_messages(r), seq_len) for r in records]
    scored = [i for i, e in enumerate(encoded) if e is not None]
    losses = [math.inf] * len(records)
    with torch.no_grad():
        for start in tqdm(range(0, len(scored), batch_size), desc="scoring", unit="batch"):
            indices = scored[start:start + batch_size]
            batch = collate_rows(unpacked_rows([encoded[i] for i in indices]), tokenizer.pad_token_id)
            logits = model(input_ids=batch["input_ids"].to(model.device),
                           position_ids=batch["position_ids"].to(model.device), use_cache=False).logits.float()
            labels = batch["labels"][:, 1:].to(model.device)
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100,
                                                    reduction="none")
            counts = (labels != -100).sum(1)
            for i, total, count in zip(indices, nll.sum(1).tolist(), counts.tolist()):
                losses[i] = total / count
    return losses


def worst_fraction(records: list[dict], losses: list[float], fraction: float) -> list[dict]:
    """The `fraction` of records with the highest finite loss (at least one)."""
    finite = [(loss, i) for i, loss in enumerate(losses) if math.isfinite(loss)]
    keep = max(1, round(len(finite) * fraction))
    return [records[i] for _, i in sorted(finite, reverse=True)[:keep]]


def run(ctx: StageContext, model: str, dataset: str, fraction: float, max_train_records: int | None,
        max_val_records: int | None, keep_zeros: bool, **knobs) -> Artifact:
    from cogumi.models import load_causal_lm

    if not 0 < fraction <= 1:
        raise ConfigError(f"conf/stage/recovery.yaml: run.fraction={fraction} must be in (0, 1]")
    settings = settings_from(ctx.stage, knobs)
    artifact, pool = dataset_split(ctx, dataset, "train", max_train_records)
    _, val = dataset_split(ctx, dataset, "val", max_val_records)
    model_input = ctx.model_input(model)
    inputs = {"model": model_input.identity, "dataset": artifact}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    compressed, tokenizer = load_causal_lm(model_input.source, ctx.hardware, ctx.model.revision)
    losses = reply_losses(compressed, tokenizer, pool, settings.seq_len, ctx.hardware.eval_batch_size)
    del compressed
    selected = worst_fraction(pool, losses, fraction)
    finite = sorted(loss for loss in losses if math.isfinite(loss))
    cutoff = min(losses[pool.index(r)] for r in selected)
    log.info("recovery set: %d of %d records, reply loss ≥ %.3f (median of the pool %.3f)", len(selected),
             len(pool), cutoff, finite[len(finite) // 2])
    return finetune(ctx, model, selected, val, inputs, settings, keep_zeros=keep_zeros,
                    extra={"scored_records": len(pool), "selected_records": len(selected),
                           "selection_loss_cutoff": round(cutoff, 5),
                           "pool_median_loss": round(finite[len(finite) // 2], 5)})
