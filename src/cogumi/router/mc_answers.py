"""The base's answers to held-out multiple-choice items, scored through llama.cpp, with correctness.

Zero-shot prompt `Question / A. .. D. / Answer:`; the model's answer is the option letter with the
highest next-token logit (greedy decoding of one token restricted to the letters). Its token logprob
(full vocabulary) and the letters' logprobs are what `confidence` turns into P(correct). Items come
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
    options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(item["options"]))
    return f"Question: {item['question']}\n{options}\nAnswer:"


class MCScorer:
    """One llama.cpp context (optionally with a LoRA adapter) scoring the next token after a prompt."""

    def __init__(self, gguf: str, lora: str | None = None, threads: int | None = None, n_ctx: int = 1024,
                 seed: int = 0):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), lora_path=str(lora) if lora else None, n_ctx=n_ctx,
                         n_threads=threads, logits_all=False, seed=seed, verbose=False)
        self.letter_ids = [self.llm.tokenize(f" {c}".encode(), add_bos=False, special=False)[0] for c in LETTERS]

    def answer(self, item: dict) -> dict:
        tokens = self.llm.tokenize(prompt_of(item).encode("utf-8"), add_bos=True, special=False)
        tokens = tokens[-(self.llm.n_ctx() - 1):]
        started = time.perf_counter()
        self.llm.reset()
        self.llm.eval(tokens)
        logits = np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float64)
        seconds = time.perf_counter() - started
        logprobs = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        options = [float(logprobs[self.letter_ids[i]]) for i in range(len(item["options"]))]
        chosen = int(np.argmax(options))
        return {"id": item["id"], "set": item["set"], "gold": item["gold"], "chosen": chosen,
                "correct": int(chosen == item["gold"]), "option_logprobs": options,
                "token_logprobs": [options[chosen]],
                "top_logprobs": [{LETTERS[i]: lp for i, lp in enumerate(options)}],
                "prompt_tokens": len(tokens), "seconds": round(seconds, 5)}


def answer_all(scorer: MCScorer, items: list[dict], desc: str) -> list[dict]:
    return [scorer.answer(item) for item in tqdm(items, desc=desc, mininterval=5)]
