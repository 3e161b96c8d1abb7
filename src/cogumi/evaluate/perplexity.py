"""`evaluate.py stage=perplexity`: token-level perplexity of a model on held-out text."""

import logging
import math
import time

from cogumi.artifacts import Artifact
from cogumi.data.text import read_documents
from cogumi.errors import ConfigError
from cogumi.models.fidelity import mean_nll, scoring_windows  # shared with compress
from cogumi.stage import StageContext

log = logging.getLogger(__name__)


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
