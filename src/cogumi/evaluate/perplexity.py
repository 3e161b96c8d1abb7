"""`evaluate.py stage=perplexity`: token-level perplexity of a model on held-out text."""

import logging
import math
import time

from cogumi.artifacts import Artifact
from cogumi.data.text import read_documents
from cogumi.errors import ConfigError
from cogumi.stage import StageContext

log = logging.getLogger(__name__)


def scoring_windows(tokenizer, documents: list[str], window: int, max_windows: int | None):
    """Non-overlapping `window`-token slices of the documents, deterministic, no window mixing texts.

    Windows are taken round-robin over documents (every document's first window, then every second
    one, ...), so a capped count still samples all documents rather than the first long one.
    """
    import itertools

    import torch

    per_document = []
    for doc in documents:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        per_document.append([ids[s:s + window] for s in range(0, len(ids) - window + 1, window)])
    interleaved = [w for layer in itertools.zip_longest(*per_document) for w in layer if w is not None]
    if not interleaved:
        raise ConfigError(f"no document has {window} tokens: lower stage.run.window")
    return torch.tensor(interleaved[:max_windows] if max_windows is not None else interleaved)


def mean_nll(model, windows, batch_size: int, desc: str = "perplexity") -> tuple[float, int]:
    """Mean next-token negative log-likelihood over all windows, and the number of tokens scored."""
    import torch
    from tqdm.auto import tqdm

    total_nll, total_tokens = 0.0, 0
    with torch.no_grad():
        for start in tqdm(range(0, len(windows), batch_size), desc=desc, unit="batch"):
            batch = windows[start:start + batch_size].to(model.device)
            logits = model(input_ids=batch).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                                    batch[:, 1:].reshape(-1), reduction="sum")
            total_nll += nll.item()
            total_tokens += batch[:, 1:].numel()
    return total_nll / total_tokens, total_tokens


def run(ctx: StageContext, model: str, text_file: str, window: int, max_windows: int | None,
        batch_size: int) -> Artifact:
    from cogumi.models import load_causal_lm

    if window < 2:
        raise ConfigError(f"stage.run.window={window}: need at least 2 tokens to score")
    model_input = ctx.model_input(model)
    inputs = {"model": model_input.identity, "text": text_file}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    documents = read_documents(text_file)
    lm, tokenizer = load_causal_lm(model_input.source, ctx.hardware, ctx.model.revision)
    windows = scoring_windows(tokenizer, documents, window, max_windows)
    with ctx.create_artifact(inputs) as out:
        started = time.time()
        nll, tokens = mean_nll(lm, windows, batch_size)
        elapsed = time.time() - started
        out.metrics.update({
            "perplexity": round(math.exp(nll), 4),
            "mean_nll": round(nll, 5),
            "tokens_scored": tokens,
            "windows": len(windows),
            "tokens_per_s": round(windows.numel() / elapsed, 1),
        })
        log.info("perplexity %.3f over %d tokens (%d windows of %d)", math.exp(nll), tokens, len(windows), window)
    return out.artifact
