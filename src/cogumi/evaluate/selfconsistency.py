"""`evaluate.py stage=selfconsistency`: a distillation set from the student's own verified, agreeing answers.

For each category (math: GSM8K, code: MBPP, reasoning: ARC), items of the mining half are sampled
N times at the category's temperature, voted on and verified (voting.py); the kept answers become a
dataset artifact (`train.jsonl` / `val.jsonl`, the project's record schema) for `train.py stage=distill`.
The gates use the other half: the manifest records both.
"""

import json
import logging
import random

from tqdm.auto import tqdm

from cogumi.artifacts import Artifact
from cogumi.errors import ConfigError
from cogumi.evaluate import offline_data
from cogumi.evaluate.suite import resolve_target
from cogumi.evaluate.voting import problem_from, vote
from cogumi.stage import StageContext

log = logging.getLogger(__name__)

SETS = {"math": "gsm8k", "code": "mbpp", "reasoning": "arc_easy"}
STOPS = {"math": ["Question:", "\n\n"], "code": ["\n```", "\nassert", "\nif __name__"], "reasoning": ["\n"]}


class Sampler:
    """N completions of a prompt from a GGUF (llama.cpp) or an HF folder (transformers)."""

    def __init__(self, kind: str, location: str, hardware):
        self.kind = kind
        if kind == "gguf":
            from cogumi.evaluate.llama_lm import LlamaCppLM

            self.lm = LlamaCppLM(location, n_threads=hardware.threads)
        else:
            from cogumi.models import load_causal_lm

            self.model, self.tokenizer = load_causal_lm(location, hardware)

    def tokens(self, text: str) -> int:
        return len(self.lm.tok_encode(text)) if self.kind == "gguf" else len(self.tokenizer(text)["input_ids"])

    def as_chat(self, text: str) -> str:
        """`text` as one user turn, formatted by the model's own chat template."""
        messages = [{"role": "user", "content": text}]
        if self.kind == "gguf":
            return self.lm.apply_chat_template(messages)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def sample(self, prompt: str, n: int, temperature: float, max_tokens: int, stop: list[str], seed: int) -> list[str]:
        if self.kind == "gguf":
            kwargs = {"until": stop, "max_gen_toks": max_tokens, "do_sample": temperature > 0,
                      "temperature": temperature}
            return [self.lm.generate(prompt, {**kwargs, "seed": seed + i}) for i in range(n)]
        return self._hf_sample(prompt, n, temperature, max_tokens, stop, seed)

    def _hf_sample(self, prompt, n, temperature, max_tokens, stop, seed) -> list[str]:
        import torch

        torch.manual_seed(seed)
        ids = self.tokenizer(prompt, return_tensors="pt").to(self.model.device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 0.95} if temperature > 0 else {"do_sample": False}
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=max_tokens, num_return_sequences=n if temperature > 0 else 1,
                                      pad_token_id=self.tokenizer.pad_token_id, **sampling)
        texts = [self.tokenizer.decode(o[ids["input_ids"].shape[1]:], skip_special_tokens=True) for o in out]
        texts = [min((t.split(s)[0] for s in stop), key=len) if stop else t for t in texts]
        return texts * (n if temperature == 0 else 1)


def mine(sampler: Sampler, category: str, settings: dict, seed: int) -> tuple[list[dict], dict]:
    rows = offline_data.load(SETS[category], "mine")["test"].to_list()[:settings["items"]]
    kept, reasons = [], {}
    for doc in tqdm(rows, desc=f"self-consistency {category}", unit="item"):
        problem = problem_from(category, doc)
        prompt = sampler.as_chat(problem.prompt) if problem.chat else problem.prompt
        samples = sampler.sample(prompt, settings["n"], settings["temperature"], settings["max_tokens"],
                                 STOPS[category], seed)
        result = vote(problem, samples, settings["min_agreement"])
        reasons[result.reason] = reasons.get(result.reason, 0) + 1
        if result.kept:
            kept.append({"id": f"sc-{category}-{problem.id}", "instruction": problem.instruction,
                         "response": result.response,
                         "metadata": {"domain": category, "difficulty": None, "teacher": "self-consistency",
                                      "quality_score": round(result.agreement, 3),
                                      "tokens": sampler.tokens(problem.instruction + result.response),
                                      "source": offline_data.source_record(SETS[category], "mine") | {"item": problem.id}}})
    return kept, {"items": len(rows), "kept": len(kept), "reasons": reasons}


def run(ctx: StageContext, model: str, kind: str, categories: dict, val_fraction: float, seed: int = 1234,
        gguf_type: str | None = None) -> Artifact:
    unknown = set(categories) - set(SETS)
    if unknown:
        raise ConfigError(f"stage.run.categories: unknown {sorted(unknown)}; known: {sorted(SETS)}")
    for name, settings in categories.items():
        if not 0 < settings["min_agreement"] <= 1 or settings["n"] < 1:
            raise ConfigError(f"stage.run.categories.{name}: need n >= 1 and 0 < min_agreement <= 1")
    target, identity = resolve_target(ctx, kind, model, gguf_type)
    inputs = {"model": identity}
    if (previous := ctx.up_to_date(inputs)) is not None:
        return previous

    sampler = Sampler(kind, target.location, ctx.hardware)
    records, report = [], {}
    for category, settings in categories.items():
        kept, report[category] = mine(sampler, category, dict(settings), seed)
        records += kept
        log.info("%s: kept %d of %d (%s)", category, len(kept), report[category]["items"], report[category]["reasons"])
    random.Random(seed).shuffle(records)
    # At least one validation record whenever there are two: the distill stage validates on it.
    n_val = max(1, int(round(len(records) * val_fraction))) if len(records) > 1 and val_fraction > 0 else 0
    with ctx.create_artifact(inputs) as out:
        for split, rows in (("train", records[n_val:]), ("val", records[:n_val])):
            (out.dir / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        out.metrics.update({"records": len(records), "train_records": len(records) - n_val, "val_records": n_val})
        out.metrics.update({f"kept/{c}": r["kept"] for c, r in report.items()})
        out.metrics.update({f"yield/{c}": round(r["kept"] / max(r["items"], 1), 4) for c, r in report.items()})
        out.extra["mining"] = report
        out.extra["splits"] = {"mined": [offline_data.source_record(SETS[c], "mine") for c in categories],
                               "gated": [offline_data.source_record(SETS[c], "gate") for c in categories]}
    return out.artifact
