"""The modifier's card (`card.md`): what it is for, what it was trained on, and what it measured."""


def _paired_line(name: str, summary: dict) -> str:
    p, b, m = summary["paired"], summary["base"], summary["modifier"]
    return (f"| {name} | {p['n']} | {b['value']:.3f} [{b['low']:.3f}, {b['high']:.3f}] | "
            f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}] | {p['difference']:+.3f} "
            f"[{p['low']:+.3f}, {p['high']:+.3f}] | {p['p_value']:.3g} |")


def render_card(domain, rank: int, base_model: str, base_gguf: str, adapter_mb: float, lora_mb: float,
                data: dict, funnel_md: str, comparison: dict | None, verdict: tuple[bool, list[str]] | None) -> str:
    lines = [f"# Modifier: {domain.name}", "",
             f"A LoRA (rank {rank}) on `{base_model}` for the **{domain.name}** domain "
             f"({', '.join(domain.eval_tasks)}), applied by llama.cpp at run time on `{base_gguf}`.", "",
             f"- PEFT adapter: `adapter/` ({adapter_mb:.2f} MB); GGUF LoRA: `lora/adapter.gguf` ({lora_mb:.2f} MB)",
             f"- verifier: `{domain.verifier}`; training records: {data['train_records']} from {data['dataset']} "
             f"(+ {data['replayed_records']} replayed from {data['replay'] or 'nothing'})",
             f"- mined on the `mine` half of the tasks; measured on the `gate` half (never the same items)", "",
             "## Where the training answers came from (teacher cascade)", "", funnel_md]
    if comparison is not None:
        lines += ["## Base vs modifier (greedy, llama.cpp, share correct with 95% intervals)", "",
                  "| items | n | base | modifier | difference | p (McNemar) |", "|---|---|---|---|---|---|",
                  _paired_line(f"own: {', '.join(domain.eval_tasks)}", comparison["own"])]
        lines += [_paired_line(task, s) for task, s in comparison["others"].items()]
        lines.append("")
    if verdict is not None:
        passed, reasons = verdict
        lines += ["## Verdict", "", "passes its gate" if passed else "does NOT pass its gate: " + "; ".join(reasons), ""]
    return "\n".join(lines)
