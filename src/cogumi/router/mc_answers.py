"""The base's answers to held-out multiple-choice items, scored through llama.cpp, with correctness.

Zero-shot cloze prompt (`Question: ...\nAnswer:`, HellaSwag's context as is); the model's answer is
the option whose text has the highest loglikelihood as the continuation (lm-eval's `acc`; a 135M
model picks option letters at chance, option texts above it). What `confidence` turns into
P(correct): the chosen option's per-token logprobs (mean, minimum, 10 % quantile) and every option's
total loglikelihood and token count (option probability, margin, length-normalised agreement). Items come from the mining halves of HellaSwag, ARC (and MMLU,
where the 135M model is at chance, so its confidence carries no signal) only, chosen by the same
text-hash split as the router's queries: calibrators fit on `train`, are measured on `val`, routing
is evaluated on `test`.
"""

import logging
import time

import numpy as np
from tqdm.auto import tqdm

from cogumi.evaluate import offline_data
from cogumi.evaluate.llama_scoring import MultiSequenceScorer
from cogumi.router.domain_data import interleave, split_of

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGH"
MC_SETS = ("hellaswag", "arc_easy", "arc_challenge", "mmlu")


def _as_item(name: str, row: dict, index: int) -> dict | None:
    """{id, set, question, prompt, options, gold}; HellaSwag's context is continued as is (lm-eval's form)."""
    if name == "hellaswag":
        context = f"{row['activity']}: {row['ctx']}"
        return {"id": f"{name}/{row['id']}", "set": name, "question": context, "prompt": context,
                "options": list(row["endings"]), "gold": int(row["gold"])}
    options = row.get("options") or row.get("choices")
    if not options:
        return None
    return {"id": f"{name}/{row.get('id', index)}", "set": name, "question": row["question"],
            "prompt": f"Question: {row['question']}\nAnswer:", "options": list(options),
            "gold": int(row.get("gold", row.get("answer")))}


def mc_items(sets: list[str], split: str, limit: int, val_share: float, test_share: float) -> list[dict]:
    """Items of one split (by the hash of their question/context), sets interleaved, part `mine` only."""
    pools = []
    for name in sets:
        rows = offline_data._select(offline_data.ROWS[name](), "mine")
        items = [_as_item(name, r, i) for i, r in enumerate(rows)]
        pools.append([item for item in items if item and len(item["options"]) <= len(LETTERS)
                      and split_of(item["question"], val_share, test_share) == split])
    return list(interleave(pools))[:limit]


def held_out_items(sets: list[str], splits: list[str], limit: int, exclude: set[str], val_share: float,
                   test_share: float) -> list[dict]:
    """Up to `limit` items of the `splits` in order, minus the `exclude` ids (the calibrator's fit items):
    `[val, train]` measures a calibrator on val and then on the train items it was not fitted on."""
    items = []
    for split in splits:
        items += [item for item in mc_items(sets, split, 10**9, val_share, test_share) if item["id"] not in exclude]
    return items[:limit]


class MCScorer:
    """Option loglikelihoods from llama.cpp (the project's `cogumi-gguf` scorer), optionally with a LoRA."""

    def __init__(self, gguf: str, lora: str | None = None, threads: int | None = None, n_ctx: int = 1024,
                 seed: int = 0):
        from cogumi.evaluate.llama_lm import LlamaCppLM

        self.lm = LlamaCppLM(str(gguf), n_ctx=n_ctx, n_threads=threads, seed=seed,
                             lora_path=str(lora) if lora else None)
        self.scorer = MultiSequenceScorer(self.lm.llm, n_ctx=2 * n_ctx, n_batch=self.lm.n_batch,
                                          n_threads=self.lm.n_threads, token_logprobs=True)

    def answer(self, item: dict) -> dict:
        """The chosen option (highest loglikelihood), whether it is right, and its scores."""
        started = time.perf_counter()
        pairs = [self.lm.encode_pair(item["prompt"], f" {option}") for option in item["options"]]
        results = self.scorer.score(pairs[0][0], [continuation for _, continuation in pairs])
        seconds = time.perf_counter() - started
        options = [float(total) for total, _, _ in results]
        chosen = int(np.argmax(options))
        return {"id": item["id"], "set": item["set"], "gold": item["gold"], "chosen": chosen,
                "correct": int(chosen == item["gold"]), "option_logprobs": options,
                "option_tokens": [len(tokens) for _, _, tokens in results],
                "token_logprobs": results[chosen][2], "top_logprobs": None,
                "prompt_tokens": len(pairs[0][0]), "seconds": round(seconds, 5)}


def answer_all(scorer: MCScorer, items: list[dict], desc: str) -> list[dict]:
    return [scorer.answer(item) for item in tqdm(items, desc=desc, mininterval=5)]
