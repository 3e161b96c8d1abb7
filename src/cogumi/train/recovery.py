"""`train.py stage=recovery`: after compression, fine-tune on what the compressed model lost most.

The seeds' recovery step: score a dataset under the compressed model, keep the worst-perplexity
`fraction` (10 %) of records and fine-tune on them with LoRA. With `keep_zeros` the merged weights
keep the pruned zeros, so a sparse model stays sparse (a dense LoRA update would fill them in).

Two kinds of data: the chat records of a dataset artifact (reply-only loss, as in SFT), or with
`text_data` plain general text (every token a target). What pruning costs is general language
modelling, which held-out perplexity measures; chat replies train a fraction of their tokens on a
narrower style. The text file must not be the held-out perplexity text (refused).
"""

import logging
import math
import random
from pathlib import Path

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.stage import StageContext
from cogumi.train.examples import Example, encode_conversation, encode_records, record_messages, unpacked_rows
from cogumi.train.finetune import finetune, settings_from
from cogumi.train.sft import dataset_split

log = logging.getLogger(__name__)


def encode_texts(tokenizer, records: list[dict], seq_len: int) -> list[Example]:
    """Plain-text records ({"text": ...}) cut into chunks of ≤ `seq_len` tokens, every token a target."""
    examples = []
    for record in records:
        ids = tokenizer(record["text"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        examples += [Example(ids[s:s + seq_len], ids[s:s + seq_len]) for s in range(0, len(ids), seq_len)
                     if len(ids[s:s + seq_len]) >= 16]
    return examples


def text_records(path: str, heldout_text: str, seed: int, train: int | None, val: int | None):
    """(train, val) documents of a text file, shuffled by seed, disjoint: val from the end, train from the start."""
    from cogumi.data.text import read_documents

    if Path(path).resolve() == Path(heldout_text).resolve():
        raise ConfigError(f"stage.run.text_data={path} is the held-out perplexity text: recovery would train on "
                          "what recovery_gap measures; use other text (e.g. the shipped C4 file)")
    documents = [{"text": doc} for doc in read_documents(path)]
    random.Random(seed).shuffle(documents)
    val_count = val if val is not None else max(1, len(documents) // 20)
    if val_count >= len(documents):
        raise ConfigError(f"{path}: {len(documents)} documents, cannot hold out {val_count} for validation")
    pool = documents[:len(documents) - val_count]
    return pool[:train] if train is not None else pool, documents[len(documents) - val_count:]


def example_losses(model, examples: list[Example | None], batch_size: int, pad_token_id: int) -> list[float]:
    """Mean next-token loss over each example's target tokens (inf for a missing example)."""
    import torch
    from tqdm.auto import tqdm

    from cogumi.train.datamodule import collate_rows

    scored = [i for i, e in enumerate(examples) if e is not None]
    losses = [math.inf] * len(examples)
    with torch.no_grad():
        for start in tqdm(range(0, len(scored), batch_size), desc="scoring", unit="batch"):
            indices = scored[start:start + batch_size]
            batch = collate_rows(unpacked_rows([examples[i] for i in indices]), pad_token_id)
            logits = model(input_ids=batch["input_ids"].to(model.device),
                           position_ids=batch["position_ids"].to(model.device), use_cache=False).logits.float()
            labels = batch["labels"][:, 1:].to(model.device)
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100,
                                                    reduction="none")
            counts = (labels != -100).sum(1)
            for i, total, count in zip(indices, nll.sum(1).tolist(), counts.tolist()):
                losses[i] = total / count
    return losses


def reply_losses(model, tokenizer, records: list[dict], seq_len: int, batch_size: int) -> list[float]:
    """Mean next-token loss over each record's reply tokens (inf for records with none in `seq_len`)."""
    examples = [encode_conversation(tokenizer, record_messages(r), seq_len) for r in records]
    return example_losses(model, examples, batch_size, tokenizer.pad_token_id)


def worst_fraction(records: list[dict], losses: list[float], fraction: float) -> list[dict]:
    """The `fraction` of records with the highest finite loss (at least one)."""
    finite = [(loss, i) for i, loss in enumerate(losses) if math.isfinite(loss)]
    keep = max(1, round(len(finite) * fraction))
    return [records[i] for _, i in sorted(finite, reverse=True)[:keep]]


def run(ctx: StageContext, model: str, dataset: str, fraction: float, max_train_records: int | None,
        max_val_records: int | None, keep_zeros: bool, text_data: str | None = None,
        heldout_text: str | None = None, **knobs) -> Artifact:
    from cogumi.models import load_causal_lm

    if not 0 < fraction <= 1:
        raise ConfigError(f"conf/stage/recovery.yaml: run.fraction={fraction} must be in (0, 1]")
    settings = settings_from(ctx.stage, knobs)
    model_input = ctx.model_input(model)
    if text_data:
        pool, val = text_records(text_data, heldout_text or "", settings.seed, max_train_records, max_val_records)
        inputs = {"model": model_input.identity, "text": text_data}
        encode = encode_texts
    else:
        artifact, pool = dataset_split(ctx, dataset, "train", max_train_records)
        _, val = dataset_split(ctx, dataset, "val", max_val_records)
        inputs = {"model": model_input.identity, "dataset": artifact}
        encode = encode_records
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    extra = {"data": "text" if text_data else "chat", "scored_records": len(pool)}
    selected = pool
    if fraction < 1:  # score the pool under the compressed model, keep what it lost most
        compressed, tokenizer = load_causal_lm(model_input.source, ctx.hardware, ctx.model.revision)
        if text_data:
            firsts = [next(iter(encode_texts(tokenizer, [r], settings.seq_len)), None) for r in pool]
            losses = example_losses(compressed, firsts, ctx.hardware.eval_batch_size, tokenizer.pad_token_id)
        else:
            losses = reply_losses(compressed, tokenizer, pool, settings.seq_len, ctx.hardware.eval_batch_size)
        del compressed
        selected = worst_fraction(pool, losses, fraction)
        finite = sorted(loss for loss in losses if math.isfinite(loss))
        cutoff = min(losses[pool.index(r)] for r in selected)
        log.info("recovery set: %d of %d records, loss ≥ %.3f (median of the pool %.3f)", len(selected),
                 len(pool), cutoff, finite[len(finite) // 2])
        extra.update(selection_loss_cutoff=round(cutoff, 5), pool_median_loss=round(finite[len(finite) // 2], 5))
    extra["selected_records"] = len(selected)
    return finetune(ctx, model, selected, val, inputs, settings, keep_zeros=keep_zeros, extra=extra, encode=encode)
