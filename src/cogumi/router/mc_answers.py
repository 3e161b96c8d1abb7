"""The base's answers to held-out multiple-choice items, scored through llama.cpp, with correctness.

Zero-shot cloze prompt `Question: ...\nAnswer:`; the model's answer is the option whose text has the
highest loglikelihood as the continuation (lm-eval's `acc`; a 135M model picks option letters at
chance, option texts well above it). The options' loglikelihoods are what `confidence` turns into
P(correct). Items come
from the mining halves of MMLU and ARC only, and are chosen by the same text-hash split as the
router's queries: calibrators fit on `train`, are measured on `val`, routing is evaluated on `test`.
"""

import logging
import time

import numpy as np
from tqdm.auto import tqdm

from cogumi.evaluate import offline_data
from cogumi.router.domain_data import interleave, split_of

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGH"
MC_SETS = ("mmlu", "arc_easy", "arc_challenge")


def mc_items(sets: list[str], split: str, limit: int, val_share: float, test_share: float) -> list[dict]:
    """{id, set, question, options, gold} of one split, sets interleaved, from part `mine` only."""
    pools = []
    for name in sets:
        rows = offline_data._select(offline_data.ROWS[name](), "mine")
        items = []
        for r in rows:
            options = r.get("options") or r.get("choices")
            gold = r.get("gold", r.get("answer"))
            if split_of(r["question"], val_share, test_share) == split and options and len(options) <= len(LETTERS):
                items.append({"id": f"{name}/{r.get('id', len(items))}", "set": name, "question": r["question"],
                              "options": list(options), "gold": int(gold)})
        pools.append(items)
    return list(interleave(pools))[:limit]


def prompt_of(item: dict) -> str:
    """lm-eval's cloze form (arc_easy style): each option is scored as the continuation of this."""
    return f"Question: {item['question']}\nAnswer:"


class MCScorer:
    """Option loglikelihoods from llama.cpp (the project's `cogumi-gguf` scorer), optionally with a LoRA."""

    def __init__(self, gguf: str, lora: str | None = None, threads: int | None = None, n_ctx: int = 1024,
                 seed: int = 0):
        from cogumi.evaluate.llama_lm import LlamaCppLM

        self.lm = LlamaCppLM(str(gguf), n_ctx=n_ctx, n_threads=threads, seed=seed, lora_path=str(lora) if lora else None)

    def answer(self, item: dict) -> dict:
        """The chosen option (highest loglikelihood), whether it is right, and its scores.

        For the confidence features the answer is one "token" whose logprob is the chosen option's
        total loglikelihood and whose alternatives are the other options' (softmax = option probability).
        """
        started = time.perf_counter()
        pairs = [self.lm.encode_pair(prompt_of(item), f" {option}") for option in item["options"]]
        results = self.lm.scorer.score(pairs[0][0], [continuation for _, continuation in pairs])
        seconds = time.perf_counter() - started
        options = [float(logprob) for logprob, _ in results]
        chosen = int(np.argmax(options))
        return {"id": item["id"], "set": item["set"], "gold": item["gold"], "chosen": chosen,
                "correct": int(chosen == item["gold"]), "option_logprobs": options,
                "token_logprobs": [options[chosen]],
                "top_logprobs": [{LETTERS[i]: lp for i, lp in enumerate(options)}],
                "prompt_tokens": len(pairs[0][0]), "seconds": round(seconds, 5)}


def answer_all(scorer: MCScorer, items: list[dict], desc: str) -> list[dict]:
    return [scorer.answer(item) for item in tqdm(items, desc=desc, mininterval=5)]
