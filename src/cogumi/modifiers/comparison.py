"""Base vs base + modifier, both through llama.cpp as they are served (base GGUF, GGUF LoRA at run time).

Greedy chat replies on the gating half of the domain's own tasks (pooled: one paired comparison
over all own items) and of other domains' tasks (one paired comparison per task), each reply
scored 0/1 by the task's verifier; `cogumi.stats.compare_paired` gives the difference, its 95%
interval and the exact McNemar p-value. `verdict` applies min_gain / max_drop to them.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from cogumi.errors import ConfigError
from cogumi.modifiers.items import load_items, verifier_of
from cogumi.modifiers.verifiers import REPLY_STOPS, Verifier
from cogumi.stats import PairedComparison, compare_paired, proportion

log = logging.getLogger(__name__)



class GGUFChat:
    """Greedy chat replies from a GGUF, optionally with a GGUF LoRA applied at run time."""

    def __init__(self, model_path: Path, lora_path: Path | None = None, threads: int | None = None, n_ctx: int = 2048):
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llm = Llama(model_path=str(model_path), lora_path=str(lora_path) if lora_path else None, n_ctx=n_ctx,
                         n_threads=threads, seed=0, verbose=False)
        self.formatter = Jinja2ChatFormatter(
            template=self.llm.metadata.get("tokenizer.chat_template", ""),
            eos_token=self.llm.detokenize([self.llm.token_eos()]).decode(),
            bos_token=self.llm.detokenize([self.llm.token_bos()]).decode(), add_generation_prompt=True)

    def reply(self, text: str, max_tokens: int, stop: list[str]) -> str:
        prompt = self.formatter(messages=[{"role": "user", "content": text}]).prompt
        out = self.llm.create_completion(prompt, max_tokens=max_tokens, stop=stop or None, temperature=0.0, seed=0)
        return out["choices"][0]["text"]

    def close(self) -> None:
        self.llm.close()


@dataclass(frozen=True)
class Scored:
    task: str
    item_id: str
    base: float
    modifier: float


def score_items(base: GGUFChat, modified: GGUFChat, task: str, n: int, max_tokens: int, verifier: Verifier) -> list[Scored]:
    stop = REPLY_STOPS[verifier.kind]
    rows = []
    for item in tqdm(load_items(task, "gate", n), desc=f"compare {task}", unit="item"):
        scores = [float(verifier.check(item, m.reply(item.prompt, max_tokens, stop)).passed) for m in (base, modified)]
        rows.append(Scored(task, item.id, *scores))
    return rows


def paired(rows: list[Scored]) -> PairedComparison:
    return compare_paired([r.modifier for r in rows], [r.base for r in rows])


def compare(base_gguf: Path, lora: Path, own_tasks: list[str], own_verifier: Verifier, own_items: int,
            other_tasks: dict, max_tokens: dict, threads: int | None = None) -> dict:
    """{"own": {...}, "others": {task: {...}}, "rows": [...]}; other_tasks = {task: items}."""
    if overlap := set(own_tasks) & set(other_tasks):
        raise ConfigError(f"stage.run.comparison.other_tasks repeats the domain's own tasks {sorted(overlap)}")
    base, modified = GGUFChat(base_gguf, threads=threads), GGUFChat(base_gguf, lora, threads=threads)
    try:
        per_task = max(1, -(-own_items // len(own_tasks)))  # ceil: at least own_items in all
        own_rows = [r for t in own_tasks for r in score_items(base, modified, t, per_task, max_tokens.get(t, 128),
                                                              own_verifier)]
        other_rows = {t: score_items(base, modified, t, n, max_tokens.get(t, 128), Verifier(verifier_of(t)))
                      for t, n in other_tasks.items()}
    finally:
        base.close()
        modified.close()
    return {"own": summary(own_rows), "others": {t: summary(rows) for t, rows in other_rows.items()},
            "rows": [r.__dict__ for r in own_rows + [r for rows in other_rows.values() for r in rows]]}


def summary(rows: list[Scored]) -> dict:
    n = len(rows)
    return {"paired": paired(rows).to_dict(),
            "base": proportion(int(sum(r.base for r in rows)), n).to_dict(),
            "modifier": proportion(int(sum(r.modifier for r in rows)), n).to_dict()}


def verdict(result: dict, min_gain: float | None, max_drop: float | None) -> tuple[bool, list[str]]:
    """Pass = own-domain interval of the gain above `min_gain`, and no other task's interval below -max_drop."""
    reasons = []
    own = result["own"]["paired"]
    if min_gain is not None and not (own["n"] > 0 and own["low"] > min_gain and own["p_value"] < 0.05):
        reasons.append(f"own-domain gain {own['difference']:+.3f} [{own['low']:+.3f}, {own['high']:+.3f}] "
                       f"n={own['n']} is not significantly above {min_gain}")
    for task, other in result["others"].items():
        p = other["paired"]
        if max_drop is not None and p["n"] > 0 and p["high"] < -max_drop and p["p_value"] < 0.05:
            reasons.append(f"{task} drops significantly: {p['difference']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]")
    return not reasons, reasons


def plot(result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["own domain"] + list(result["others"])
    paired_rows = [result["own"]["paired"]] + [o["paired"] for o in result["others"].values()]
    figure, axes = plt.subplots(figsize=(6, 0.6 * len(names) + 1.5))
    for i, p in enumerate(paired_rows):
        axes.errorbar(p["difference"], i, xerr=[[p["difference"] - p["low"]], [p["high"] - p["difference"]]],
                      fmt="o", color="green" if p["low"] > 0 else "red" if p["high"] < 0 else "grey", capsize=4)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(names)), [f"{n} (n={p['n']})" for n, p in zip(names, paired_rows)], fontsize=8)
    axes.set_xlabel("modifier - base (share correct), 95% interval")
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
