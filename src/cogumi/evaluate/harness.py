"""Run the Cogumi task suite through lm-evaluation-harness, on any of the three model kinds.

- `hf`: an HF folder (lm-eval's own `hf` model);
- `gguf`: a GGUF file through llama.cpp (`cogumi-gguf`, loglikelihoods from Llama.eval + scores);
- `api`: a served OpenAI-compatible endpoint (lm-eval `local-chat-completions`; generation tasks only,
  since chat endpoints return no prompt logprobs).
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cogumi.errors import ConfigError

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).parent / "tasks"
KINDS = ("hf", "gguf", "api")
# Per task: the metric that says whether one answer was right (failures, gates, tables).
PRIMARY = {
    "cogumi_mmlu": "acc", "cogumi_arc_challenge": "acc_norm", "cogumi_arc_easy": "acc_norm",
    "cogumi_hellaswag": "acc_norm", "cogumi_gsm8k": "exact_match", "cogumi_humaneval": "pass_at_1",
    "cogumi_mbpp": "pass_at_1", "cogumi_bfcl": "ast_match", "cogumi_truthfulqa": "truthful_match",
}
LOGLIKELIHOOD_TASKS = ("cogumi_mmlu", "cogumi_arc_challenge", "cogumi_arc_easy", "cogumi_hellaswag")


@dataclass(frozen=True)
class ModelTarget:
    """What lm-eval evaluates: `kind` and its location (folder, .gguf file or base URL)."""

    kind: str
    location: str
    api_model: str = ""  # served model name (api kind)
    lora: str | None = None  # a GGUF LoRA adapter file llama.cpp applies on load (gguf kind only)
    batch_size: int = 4
    threads: int | None = None
    extra: dict = field(default_factory=dict)

    def lm_eval_model(self) -> tuple[str, dict]:
        if self.lora and self.kind != "gguf":
            raise ConfigError(f"a LoRA adapter ({self.lora}) is applied by llama.cpp: evaluate it as kind=gguf")
        if self.kind == "hf":
            return "hf", {"pretrained": self.location, "dtype": "float32", "device": "cpu",
                          "batch_size": self.batch_size, **self.extra}
        if self.kind == "gguf":
            from cogumi.evaluate import llama_lm  # noqa: F401  (registers cogumi-gguf)

            return "cogumi-gguf", {"model_path": self.location, "n_threads": self.threads, "lora_path": self.lora,
                                   **self.extra}
        if self.kind == "api":
            return "local-chat-completions", {"base_url": f"{self.location.rstrip('/')}/chat/completions",
                                              "model": self.api_model, "tokenizer_backend": None,
                                              "num_concurrent": 1, "max_retries": 2, **self.extra}
        raise ConfigError(f"model kind '{self.kind}': expected one of {KINDS}")


def check_tasks(tasks: list[str], kind: str) -> None:
    unknown = [t for t in tasks if t not in PRIMARY]
    if unknown:
        raise ConfigError(f"stage.run.tasks: unknown task(s) {unknown}; known: {sorted(PRIMARY)}")
    if kind == "api" and (mc := [t for t in tasks if t in LOGLIKELIHOOD_TASKS]):
        raise ConfigError(f"tasks {mc} need prompt loglikelihoods, which a chat API does not return; "
                          "evaluate them as kind=hf or kind=gguf")


def run_suite(target: ModelTarget, tasks: list[str], limits: dict, part: str = "gate", seed: int = 1234,
              chat_template: bool = False, gen_overrides: dict | None = None) -> dict:
    """lm-eval results dict (with per-sample logs) for `tasks`; `limits[task]` = first N items or None."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    check_tasks(tasks, target.kind)
    chat_template = chat_template or target.kind == "api"  # a chat endpoint takes messages, not raw text
    model, model_args = target.lm_eval_model()
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"part": part})
    samples = {t: list(range(limits[t])) if limits.get(t) is not None else None for t in tasks}
    task_dict = _task_dict(manager, tasks, gen_overrides or {})
    samples = {t: _clip(task_dict[t], s) for t, s in samples.items()}
    log.info("lm-eval: %s %s on %s (part=%s)", target.kind, target.location, samples and
             {t: len(s) if s else "all" for t, s in samples.items()}, part)
    return simple_evaluate(model=model, model_args=model_args, tasks=list(task_dict.values()), samples=samples,
                           log_samples=True, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                           fewshot_random_seed=seed, apply_chat_template=chat_template,
                           confirm_run_unsafe_code=True, bootstrap_iters=0, task_manager=manager)


def _task_dict(manager, tasks: list[str], gen_overrides: dict) -> dict:
    """Task objects, with generation knobs (e.g. max_gen_toks) overridden from the stage config."""
    from lm_eval.tasks import get_task_dict

    built = get_task_dict(tasks, manager)
    for name, task in built.items():
        if task.config.output_type == "generate_until" and gen_overrides:
            task.config.generation_kwargs = {**task.config.generation_kwargs, **gen_overrides}
    return built


def _clip(task, indices):
    if indices is None:
        return None
    return indices[:len(task.eval_docs)]


def per_sample(results: dict) -> list[dict]:
    """Flat per-item records: task, doc id, prompt, model answer, reference, primary score, correct."""
    records = []
    for task, logged in (results.get("samples") or {}).items():
        metric = PRIMARY[task]
        for s in logged:
            records.append({
                "task": task, "doc_id": s["doc_id"], "id": str(s["doc"].get("id", s["doc_id"])),
                "prompt": s["arguments"][0][0] if s.get("arguments") else "",
                "answer": _answer(s), "target": str(s.get("target", "")),
                "score": float(s.get(metric, 0.0)), "correct": bool(s.get(metric, 0.0) >= 0.5), "doc": s["doc"],
                "choice_logprobs": _choice_logprobs(s),
            })
    return records


def _choice_logprobs(sample: dict) -> list[float] | None:
    """Per-option loglikelihoods of a multiple-choice item (None for generation tasks)."""
    resps = sample.get("resps") or []
    if resps and isinstance(resps[0], (list, tuple)) and resps[0] and isinstance(resps[0][0], (list, tuple)):
        return [float(r[0][0]) for r in resps]
    return None


def _answer(sample: dict) -> str:
    resps = sample.get("filtered_resps") or sample.get("resps") or []
    if resps and isinstance(resps[0], (list, tuple)) and resps[0] and isinstance(resps[0][0], (int, float)):
        lls = [r[0] for r in resps]  # multiple choice: the option with the highest loglikelihood
        return str(max(range(len(lls)), key=lls.__getitem__))
    first = resps[0] if resps else ""
    return first[0] if isinstance(first, list) else str(first)


def scores(results: dict) -> dict:
    """{task: {metric: value}} with lm-eval's `,none` filter suffixes removed."""
    table = {}
    for task, metrics in results.get("results", {}).items():
        table[task] = {k.split(",")[0]: v for k, v in metrics.items()
                       if "," in k and not k.split(",")[0].endswith("_stderr") and isinstance(v, (int, float))}
    return table
