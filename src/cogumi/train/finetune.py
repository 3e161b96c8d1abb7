"""One LoRA fine-tuning run, shared by `sft`, `distill` and `recovery`: setup → fit → merge → artifact.

Read top to bottom: examples are encoded with the model's chat template and packed; the untrained
student's val loss is measured first (LoRA starts as a no-op, so that is the base model's loss);
Lightning fits with checkpoints in a folder keyed by the run's fingerprint, so rerunning a killed
command resumes from its `last.ckpt`; the best weights by val loss are merged and saved.
"""

import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass

from cogumi.artifacts import Artifact, ArtifactStore, input_record
from cogumi.errors import ConfigError
from cogumi.stage import StageContext
from cogumi.train.examples import encode_records, pack_examples, unpacked_rows
from cogumi.train.module import LoraModule, LoraSettings, OptimSettings, add_lora
from cogumi.train.trainer import LAST, LoopSettings, TokenThroughput, build_trainer, callback, lightning_logger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSettings:
    seq_len: int
    packing: bool
    max_steps: int | None  # None: `epochs` passes over the packed training rows
    epochs: float
    lr: float
    warmup_steps: int
    weight_decay: float
    min_lr_ratio: float
    grad_clip: float
    lora_rank: int
    lora_alpha: int
    lora_dropout: float
    target_modules: list[str] | None  # None: the model group's lora_target_modules
    val_every: int
    save_every: int
    patience: int
    seed: int
    progress_bar: bool = True
    gradient_checkpointing: bool = False

    def check(self, stage: str) -> None:
        where = f"conf/stage/{stage}.yaml"
        for key in ("seq_len", "lora_rank", "val_every", "save_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}: run.{key}={getattr(self, key)} must be ≥ 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"{where}: run.max_steps={self.max_steps} must be ≥ 1 (or null to use epochs)")
        if not 0 <= self.lora_dropout < 1 or self.lr <= 0:
            raise ConfigError(f"{where}: run.lr={self.lr} must be > 0 and run.lora_dropout in [0, 1)")


def settings_from(stage: str, knobs: dict) -> FinetuneSettings:
    try:
        settings = FinetuneSettings(**knobs)
    except TypeError as err:
        raise ConfigError(f"conf/stage/{stage}.yaml: run knobs do not fit FinetuneSettings: {err}") from err
    settings.check(stage)
    return settings


def run_fingerprint(ctx: StageContext, inputs: dict) -> str:
    records = [input_record(name, value) for name, value in sorted(inputs.items())]
    return ArtifactStore.fingerprint(ctx.stage, ctx.fingerprint_config, records)


def finetune(ctx: StageContext, model_ref: str, train_records: list[dict], val_records: list[dict],
             inputs: dict, settings: FinetuneSettings, extra: dict | None = None,
             keep_zeros: bool = False, encode=encode_records, merge: bool = True) -> Artifact:
    """Fine-tune `model_ref` with LoRA on the records and write the model artifact.

    `encode(tokenizer, records, seq_len) -> list[Example]`: chat records by default (reply-only loss);
    recovery passes plain-text documents (every token a target). `merge=False` keeps only the adapter
    (a modifier is served as a LoRA on its base, so a merged copy would be 0.5 GB that nothing reads)."""
    import lightning as L

    from cogumi.models import load_causal_lm

    if not train_records or not val_records:
        raise ConfigError(f"{ctx.stage}: need training and validation records "
                          f"(got {len(train_records)} / {len(val_records)})")
    hardware = ctx.hardware
    source = ctx.model_input(model_ref).source
    checkpoint_dir = ctx.outputs_root / "checkpoints" / ctx.stage / run_fingerprint(ctx, inputs)[:16]
    L.seed_everything(settings.seed, workers=True, verbose=False)

    # QLoRA is a training choice of the hardware profile: only here is the base loaded in 4-bit.
    model, tokenizer = load_causal_lm(source, hardware, ctx.model.revision, load_in_4bit=hardware.load_in_4bit)
    train_examples = encode(tokenizer, train_records, settings.seq_len)
    val_examples = encode(tokenizer, val_records, settings.seq_len)
    rows = (lambda ex, seed: pack_examples(ex, settings.seq_len, seed)) if settings.packing else \
        (lambda ex, seed: unpacked_rows(ex))
    train_rows, val_rows = rows(train_examples, settings.seed), rows(val_examples, settings.seed)
    steps_per_pass = math.ceil(len(train_rows) / (hardware.batch_size * hardware.grad_accum))
    max_steps = settings.max_steps or max(1, math.ceil(steps_per_pass * settings.epochs))
    log.info("%d train examples → %d rows of ≤%d tokens (%s); %d val rows; %d optimizer steps",
             len(train_examples), len(train_rows), settings.seq_len, "packed" if settings.packing else "unpacked",
             len(val_rows), max_steps)

    targets = tuple(settings.target_modules or ctx.model.lora_target_modules)
    lora = LoraSettings(settings.lora_rank, settings.lora_alpha, settings.lora_dropout, targets)
    peft_model = add_lora(model, lora, quantized=hardware.load_in_4bit,
                          gradient_checkpointing=settings.gradient_checkpointing)
    peft_model.train()  # the loader returns eval mode; Lightning keeps each submodule's mode as found
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    optim = OptimSettings(settings.lr, settings.weight_decay, settings.warmup_steps, max_steps,
                          settings.min_lr_ratio, hardware.optimizer)
    module = LoraModule(peft_model, optim, seed=settings.seed)

    from cogumi.train.datamodule import PackedDataModule

    world_size = hardware.devices * hardware.num_nodes  # data-parallel ranks share the one row stream
    data = PackedDataModule(train_rows, val_rows, tokenizer.pad_token_id, hardware.batch_size,
                            hardware.eval_batch_size, max_steps * hardware.grad_accum * world_size, settings.seed)
    loop = LoopSettings(max_steps, settings.val_every, settings.save_every, settings.patience, settings.grad_clip,
                        settings.progress_bar)
    trainer = build_trainer(hardware, loop, checkpoint_dir, lightning_logger(ctx.tracker, ctx.outputs_root))

    untrained = trainer.validate(module, datamodule=data, verbose=False)[0]["val_loss"]
    log.info("val loss of the untrained student: %.4f", untrained)
    resume = checkpoint_dir / LAST
    if resume.is_file():
        log.info("resuming from %s", resume)
    started = time.time()
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume.is_file() else None)
    fit_seconds = time.time() - started

    best_val = choose_best_weights(trainer, module, data)
    from cogumi.train.merge import save_adapter_and_merged

    losses = module.losses_per_step()
    if not trainer.is_global_zero:
        # Data parallel: rank 0 writes the artifact; the other ranks wait for it and return the same one.
        trainer.strategy.barrier("artifact")
        return ctx.up_to_date(inputs)
    with ctx.create_artifact(inputs) as out:
        save_adapter_and_merged(peft_model, tokenizer, source, hardware, out.dir, keep_zeros, merge)
        plot_losses(losses, untrained, best_val, out.dir / "loss.png")
        throughput = callback(trainer, TokenThroughput)
        out.metrics.update({
            "val_loss": round(best_val, 5),
            "val_loss_untrained": round(untrained, 5),
            "val_loss_improvement": round(untrained - best_val, 5),
            "train_loss_last": round(losses[-1][1], 5) if losses else None,
            "trainable_params": trainable,
            "total_params": sum(p.numel() for p in peft_model.parameters()),
            "tokens_seen": module.tokens_seen,
            "optimizer_steps": trainer.global_step,
            "stopped_early": trainer.global_step < max_steps,
            "train_rows": len(train_rows),
            "train_examples": len(train_examples),
            "val_examples": len(val_examples),
            "tokens_per_s": round(throughput.tokens_per_s(skip=1 if len(throughput.batches) > 1 else 0), 1),
            "fit_wall_s": round(fit_seconds, 1),
        })
        out.extra["training"] = {**asdict(settings), "max_steps_resolved": max_steps,
                                 "effective_batch": hardware.batch_size * hardware.grad_accum * hardware.devices,
                                 "loss_per_step": [[s, round(v, 5)] for s, v in losses],
                                 "val_loss_per_validation": [[s, round(v, 5)] for s, v in module.val_history],
                                 **(extra or {})}
    shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the artifact now holds the result
    trainer.strategy.barrier("artifact")
    return out.artifact


def choose_best_weights(trainer, module, data) -> float:
    """Val loss of the final weights vs the best checkpoint; keep whichever is lower, return its loss."""
    import torch

    done = [loss for step, loss in module.val_history if step == trainer.global_step]
    final = done[-1] if done else trainer.validate(module, datamodule=data, verbose=False)[0]["val_loss"]
    from cogumi.train.trainer import ModelCheckpoint

    best = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.monitor == "val_loss")
    if best.best_model_path and best.best_model_score is not None and float(best.best_model_score) < final:
        state = torch.load(best.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        log.info("best checkpoint %s (val %.4f) beats the final weights (val %.4f)", best.best_model_path,
                 float(best.best_model_score), final)
        return float(best.best_model_score)
    return final


def plot_losses(losses: list[tuple[int, float]], untrained: float, best: float, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    if losses:
        axes.plot([s for s, _ in losses], [v for _, v in losses], label="train loss (per step)")
    axes.axhline(untrained, color="grey", linestyle="--", label=f"val, untrained {untrained:.3f}")
    axes.axhline(best, color="green", linestyle=":", label=f"val, best {best:.3f}")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
