"""The Lightning Trainer a hardware profile asks for, with checkpoints, early stopping and tokens/s."""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from cogumi.hardware import HardwareSpec

log = logging.getLogger(__name__)

LAST = "last.ckpt"


@dataclass(frozen=True)
class LoopSettings:
    max_steps: int
    val_every: int  # optimizer steps between validations
    save_every: int  # optimizer steps between `last.ckpt` saves (what a killed run resumes from)
    patience: int  # validations without improvement before early stopping
    grad_clip: float
    progress_bar: bool = True


class TokenThroughput(Callback):
    """Real (non-pad) training tokens per second, on the progress bar and in the logger."""

    def __init__(self):
        self.started = None
        self.batches: list[tuple[int, float]] = []  # (real tokens, seconds) per training batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        elapsed = time.perf_counter() - self.started
        self.batches.append((int(batch["real_tokens"]), elapsed))
        pl_module.log("tok_s", int(batch["real_tokens"]) / max(elapsed, 1e-9), prog_bar=True, batch_size=1)

    def tokens_per_s(self, skip: int = 0) -> float:
        """Over all batches after the first `skip` (the first one pays one-time allocation costs)."""
        kept = self.batches[skip:]
        seconds = sum(s for _, s in kept)
        return sum(t for t, _ in kept) / seconds if seconds else 0.0


def trainer_arguments(hardware: HardwareSpec, loop: LoopSettings) -> dict:
    """What the hardware profile and the loop settings decide about the Trainer."""
    return dict(
        accelerator=hardware.accelerator,
        devices=hardware.devices,
        num_nodes=hardware.num_nodes,
        strategy=hardware.strategy,
        precision=hardware.precision,
        max_steps=loop.max_steps,
        accumulate_grad_batches=hardware.grad_accum,
        gradient_clip_val=loop.grad_clip,
        # validation every `val_every` optimizer steps, counted in micro-batches over the one-epoch stream
        val_check_interval=loop.val_every * hardware.grad_accum,
        check_val_every_n_epoch=None,
        enable_progress_bar=loop.progress_bar,
        # PackedDataModule shards its row stream across ranks itself (same rows per step as 1 process).
        use_distributed_sampler=False,
    )


def build_trainer(hardware: HardwareSpec, loop: LoopSettings, checkpoint_dir: Path, logger) -> L.Trainer:
    best = ModelCheckpoint(dirpath=checkpoint_dir, filename="best-{step}", monitor="val_loss", mode="min",
                           save_top_k=1, save_weights_only=False)
    last = ModelCheckpoint(dirpath=checkpoint_dir, save_top_k=0, save_last=True,
                           every_n_train_steps=loop.save_every)
    callbacks = [best, last, EarlyStopping(monitor="val_loss", mode="min", patience=loop.patience),
                 TokenThroughput()]
    if loop.progress_bar:
        from lightning.pytorch.callbacks import TQDMProgressBar

        callbacks.append(TQDMProgressBar(refresh_rate=1))
    return L.Trainer(
        **trainer_arguments(hardware, loop),
        num_sanity_val_steps=0,
        logger=logger,
        log_every_n_steps=1,
        callbacks=callbacks,
        enable_model_summary=False,
        default_root_dir=str(checkpoint_dir),
    )


def callback(trainer: L.Trainer, kind: type):
    return next(c for c in trainer.callbacks if isinstance(c, kind))


def lightning_logger(tracker, save_dir: Path):
    """Lightning's WandbLogger on the stage's W&B run (offline by default); none for `logger=none`."""
    run = getattr(tracker, "run", None)
    if run is None:
        return False
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(experiment=run, save_dir=str(save_dir))
