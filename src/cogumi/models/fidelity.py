"""How close a compressed model stays to its reference on held-out text: perplexity, KL, top-1, prompts.

Both sides can be an HF folder (transformers) or a `.gguf` file (llama.cpp). GGUF logits come from
`Llama.eval` + `Llama.scores` with `logits_all=True`: llama-cpp-python's echo-logprobs path returns
wrong prompt-token log-probabilities (TOOLCHAIN.md), so it is never used here. Windows are cut by the
HF tokenizer; a GGUF converted from the same folder shares its vocabulary, so the ids are the same.

Compress stages (fidelity of what they produce), evaluate stages (perplexity, gates) and the
benchmarks all score through this module, which imports neither package's stages: the
compress↔evaluate import cycle is gone.
"""

import itertools
import logging
import math
import os
import statistics
from pathlib import Path
from types import SimpleNamespace

from cogumi.compress.zstd_pack import unpacked_gguf
from cogumi.errors import ConfigError
from cogumi.hardware import HardwareSpec
from cogumi.models.loader import chat, load_causal_lm

log = logging.getLogger(__name__)


def scoring_windows(tokenizer, documents: list[str], window: int, max_windows: int | None):
    """Non-overlapping `window`-token slices of the documents, deterministic, no window mixing texts.

    Windows are taken round-robin over documents (every document's first window, then every second
    one, ...), so a capped count still samples all documents rather than the first long one.
    """
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



def window_nlls(model, windows, batch_size: int, desc: str = "nll per window") -> list[float]:
    """Mean next-token NLL of each window: the paired unit for intervals and model-vs-model tests."""
    import torch
    from tqdm.auto import tqdm

    values = []
    with torch.no_grad():
        for start in tqdm(range(0, len(windows), batch_size), desc=desc, unit="batch"):
            batch = windows[start:start + batch_size].to(model.device)
            logits = model(input_ids=batch).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")
            values += nll.mean(1).tolist()
    return values

class GGUFCausalLM:
    """A GGUF file behind transformers' `model(input_ids=...).logits` call, so `mean_nll` scores it too."""

    device = "cpu"

    def __init__(self, path: str | Path, n_ctx: int, threads: int | None = None):
        from llama_cpp import Llama

        self.path = Path(path)
        # llama-cpp-python defaults to half the cores; scoring is the only work here, so use them all.
        self.llm = Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, verbose=False,
                         n_threads=threads or os.cpu_count())

    def __call__(self, input_ids):
        import numpy as np
        import torch

        rows = []
        for ids in input_ids.tolist():
            self.llm.reset()
            self.llm.eval(ids)
            rows.append(np.array(self.llm.scores[:len(ids)], dtype=np.float32))
        return SimpleNamespace(logits=torch.from_numpy(np.stack(rows)))

    def reply(self, messages: list[dict], max_new_tokens: int) -> str:
        """Greedy chat reply, formatted by the chat template stored in the GGUF."""
        self.llm.reset()
        out = self.llm.create_chat_completion(messages, max_tokens=max_new_tokens, temperature=0.0, seed=0)
        return out["choices"][0]["message"]["content"] or ""

    def close(self) -> None:
        self.llm.close()  # explicit: Llama.__del__ at interpreter exit raises inside llama.cpp's bindings


class HFCausalLM:
    """An HF folder with the same `reply`/`close` surface as GGUFCausalLM."""

    def __init__(self, folder: str | Path, hardware: HardwareSpec):
        self.model, self.tokenizer = load_causal_lm(folder, hardware)
        self.device = self.model.device

    def __call__(self, input_ids):
        return self.model(input_ids=input_ids)

    def reply(self, messages: list[dict], max_new_tokens: int) -> str:
        return chat(self.model, self.tokenizer, messages, max_new_tokens=max_new_tokens)

    def close(self) -> None:
        self.model = None


def open_scorer(model: str | Path, hardware: HardwareSpec, n_ctx: int = 512):
    """GGUFCausalLM for a `.gguf` (or packed `.gguf.zst`) file, HFCausalLM for a folder."""
    path = Path(model)
    if path.name.endswith(".gguf.zst"):
        path = unpacked_gguf(path)
    if path.suffix == ".gguf":
        return GGUFCausalLM(path, n_ctx=n_ctx, threads=hardware.threads)
    return HFCausalLM(path, hardware)


def divergence(model, reference, windows, batch_size: int, per_window_nll: bool = False) -> dict:
    """Mean per-token KL(reference ‖ model) and how often both pick the same top-1 next token.

    `per_window_nll` adds each window's mean next-token NLL under both models (`model_nlls`,
    `reference_nlls`) from the same logits, so a paired perplexity ratio costs no second pass."""
    import torch
    from tqdm.auto import tqdm

    kl_sum, agree, count = 0.0, 0, 0
    nlls = {"model_nlls": [], "reference_nlls": []}
    with torch.no_grad():
        for start in tqdm(range(0, len(windows), batch_size), desc="kl", unit="batch"):
            batch = windows[start:start + batch_size]
            ref = torch.log_softmax(reference(input_ids=batch.to(reference.device)).logits.float().cpu(), -1)
            out = torch.log_softmax(model(input_ids=batch.to(model.device)).logits.float().cpu(), -1)
            kl_sum += (ref.exp() * (ref - out)).sum(-1).sum().item()
            agree += (ref.argmax(-1) == out.argmax(-1)).sum().item()
            count += ref.shape[0] * ref.shape[1]
            if per_window_nll:
                targets = batch[:, 1:, None]
                for key, logprobs in (("model_nlls", out), ("reference_nlls", ref)):
                    nlls[key] += (-logprobs[:, :-1].gather(-1, targets)[..., 0]).mean(1).tolist()
    return {"kl_mean": kl_sum / count, "top1_agreement": agree / count, **(nlls if per_window_nll else {})}


def prompt_replies(model, reference, prompts: list[str], max_new_tokens: int) -> list[dict]:
    """Greedy replies of both models to fixed prompts; `same` marks identical text."""
    rows = []
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        ref_text = reference.reply(messages, max_new_tokens)
        text = model.reply(messages, max_new_tokens)
        rows.append({"prompt": prompt, "reference": ref_text, "model": text, "same": text.strip() == ref_text.strip()})
    return rows


def fidelity(model, reference, tokenizer, documents: list[str], window: int, max_windows: int | None,
             batch_size: int, prompts: list[str] = (), max_new_tokens: int = 32, window_nlls: bool = False) -> dict:
    """Perplexity of both, KL and top-1 of `model` against `reference`, and fixed-prompt agreement.

    One forward pass per model: the perplexities come from the logits the KL is computed on (every
    window has the same length, so the mean of window means is the per-token mean). `window_nlls`
    adds both models' per-window NLLs (`model_nlls`, `reference_nlls`) for paired comparisons."""
    windows = scoring_windows(tokenizer, documents, window, max_windows)
    scores = divergence(model, reference, windows, batch_size, per_window_nll=True)
    report = {
        "perplexity": round(math.exp(statistics.fmean(scores["model_nlls"])), 4),
        "reference_perplexity": round(math.exp(statistics.fmean(scores["reference_nlls"])), 4),
        "kl_mean": round(scores["kl_mean"], 6),
        "top1_agreement": round(scores["top1_agreement"], 6),
        "tokens_scored": windows.shape[0] * (windows.shape[1] - 1),
        **({k: scores[k] for k in ("model_nlls", "reference_nlls")} if window_nlls else {}),
    }
    if prompts:
        replies = prompt_replies(model, reference, list(prompts), max_new_tokens)
        report["prompt_agreement"] = round(sum(r["same"] for r in replies) / len(replies), 4)
        report["prompts"] = replies
    log.info("fidelity: ppl %.3f (ref %.3f), KL %.5f, top-1 %.3f", report["perplexity"],
             report["reference_perplexity"], report["kl_mean"], report["top1_agreement"])
    return report
