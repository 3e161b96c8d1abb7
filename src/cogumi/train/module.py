"""The LightningModule: a peft LoRA model, its loss on reply tokens, AdamW (or 8-bit) with cosine+warmup.

Checkpoints hold only the trainable (LoRA) weights plus optimizer/scheduler state: the frozen base
is reloaded from its folder, so a checkpoint of an 8B QLoRA run is megabytes, not gigabytes.
"""

import logging
import math
from dataclasses import dataclass

import lightning as L
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 16
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class OptimSettings:
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_steps: int = 100
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    optimizer: str = "adamw"  # adamw | adamw_8bit


def add_lora(model, lora: LoraSettings, quantized: bool, gradient_checkpointing: bool = False):
    """Wrap a causal LM with fresh LoRA adapters (k-bit preparation first for a 4-bit base).

    Gradient checkpointing trades ~30 % more compute for activation memory (an 8B model at 1024 tokens)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still need a grad path
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, config)


def cosine_with_warmup(step: int, warmup: int, total: int, floor: float) -> float:
    """Multiplier of the base lr: linear warmup to 1, then cosine down to `floor`."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(name: str, params, lr: float, weight_decay: float):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw_8bit":  # the seeds' paged 8-bit AdamW (bitsandbytes; CUDA for speed)
        import bitsandbytes as bnb

        return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer {name!r}: expected adamw or adamw_8bit")


def batch_loss(model, batch: dict) -> torch.Tensor:
    """Mean next-token loss over reply tokens. No KV cache: with a cache transformers ignores the
    per-example position ids and would let packed examples see each other."""
    return model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
                 use_cache=False).loss


class LoraModule(L.LightningModule):
    def __init__(self, model, optim: OptimSettings, seed: int = 0):
        super().__init__()
        self.model, self.optim, self.seed = model, optim, seed
        self.tokens_seen = 0  # real (non-pad) tokens of the training batches, restored on resume
        self.step_losses: dict[int, list[float]] = {}  # optimizer step → its micro-batch losses
        self.val_history: list[tuple[int, float]] = []  # (optimizer step, val loss) of each validation

    def training_step(self, batch, batch_idx):
        # Dropout masks depend only on the position in the stream, so a resumed run draws the same ones.
        accum = self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        torch.manual_seed(self.seed + self.global_step * accum + batch_idx % accum)
        loss = batch_loss(self.model, batch)
        self.tokens_seen += int(batch["real_tokens"])
        self.step_losses.setdefault(self.global_step, []).append(float(loss.detach()))
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=1)
        return self._token_weighted(loss, batch)

    def _token_weighted(self, loss, batch):
        """Under DDP, scale each rank's mean loss by its share of the step's reply tokens: DDP then
        averages gradients into exactly the token-level mean one process would compute on the union."""
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1:
            return loss
        local = (batch["labels"][:, 1:] != -100).sum().to(torch.float64)
        total = self.trainer.strategy.reduce(local.clone(), reduce_op="sum")
        return loss * (local * world / total).to(loss.dtype)

    def on_validation_epoch_start(self):
        self._val_sum, self._val_tokens = 0.0, 0

    def validation_step(self, batch, batch_idx):
        # Weight each batch by its reply tokens so the epoch value is the token-level mean loss.
        tokens = int((batch["labels"][:, 1:] != -100).sum())
        loss = batch_loss(self.model, batch)
        self._val_sum += float(loss) * tokens
        self._val_tokens += tokens
        # sync_dist: under DDP each rank sees part of the val rows; the logged value (what checkpointing
        # and early stopping read) is the token-weighted mean over all ranks, as with one process.
        self.log("val_loss", loss, prog_bar=True, batch_size=tokens, sync_dist=True)

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        totals = torch.tensor([self._val_sum, float(self._val_tokens)], dtype=torch.float64)
        if self.trainer.world_size > 1:
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        if totals[1] > 0:
            self.val_history.append((self.global_step, float(totals[0] / totals[1])))

    def on_before_optimizer_step(self, optimizer):
        from lightning.pytorch.utilities import grad_norm

        norms = grad_norm(self.model, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            self.log("grad_norm", norms["grad_2.0_norm_total"], batch_size=1)

    def losses_per_step(self) -> list[tuple[int, float]]:
        return [(step, sum(v) / len(v)) for step, v in sorted(self.step_losses.items())]

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = make_optimizer(self.optim.optimizer, params, self.optim.lr, self.optim.weight_decay)
        o = self.optim
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_with_warmup(step, o.warmup_steps, o.max_steps, o.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---- checkpoints hold the trainable weights only -------------------------------------------
    def state_dict(self, *args, **kwargs):
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in super().state_dict(*args, **kwargs).items() if k in trainable}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        missing = {n for n, p in self.named_parameters() if p.requires_grad} - set(state_dict)
        if strict and missing:
            raise KeyError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[:3]}")
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint):
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
