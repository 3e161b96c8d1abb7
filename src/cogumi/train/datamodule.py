"""Lightning DataModule over packed rows, with a data order that survives a kill and resume.

Training is one long stream of `max_steps × accumulation × batch` rows (passes over the data
reshuffled per pass with the seed), so Lightning sees one epoch and the position in that stream is
exactly `global_step × accumulation` batches — which a resumed run skips, getting the same order.
"""

import logging
import random
import warnings

import lightning as L
import torch

from cogumi.train.examples import IGNORE, PackedRow

log = logging.getLogger(__name__)

# Lightning warns that a mid-epoch resume is unreliable unless the loader is stateful; this stream is
# resumed exactly by `train_dataloader` below (tests/test_train_stage.py kills and resumes a run).
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def collate_rows(rows: list[PackedRow], pad_token_id: int) -> dict:
    """Right-pad to the longest row. No attention mask: per-example position ids (padding is its
    own segment) make transformers build a block-diagonal causal mask, so examples never mix."""
    width = max(len(r.input_ids) for r in rows)
    input_ids, labels, positions = [], [], []
    for row in rows:
        pad = width - len(row.input_ids)
        input_ids.append(row.input_ids + [pad_token_id] * pad)
        labels.append(row.labels + [IGNORE] * pad)
        positions.append(row.position_ids + list(range(pad)))
    return {
        "input_ids": torch.tensor(input_ids),
        "labels": torch.tensor(labels),
        "position_ids": torch.tensor(positions),
        "real_tokens": torch.tensor(sum(r.real_tokens for r in rows)),
    }


class StreamSampler(torch.utils.data.Sampler):
    """`total` row indices: successive seeded shuffles of range(n); `skip` leading ones on resume.

    Under data parallelism rank r of `world` takes stream positions r, r + world, ... (after the
    skip), so one optimizer step of all ranks covers exactly the rows one process would take."""

    def __init__(self, n: int, total: int, seed: int):
        self.n, self.total, self.seed, self.skip = n, total, seed, 0
        self.rank, self.world = 0, 1

    def order(self) -> list[int]:
        indices, passes = [], 0
        while len(indices) < self.total:
            permutation = list(range(self.n))
            random.Random(self.seed + passes).shuffle(permutation)
            indices += permutation
            passes += 1
        return indices[:self.total]

    def __iter__(self):
        skip, self.skip = self.skip, 0
        yield from self.order()[skip:][self.rank::self.world]

    def __len__(self) -> int:
        return len(range(self.rank, self.total, self.world))


class PackedDataModule(L.LightningDataModule):
    def __init__(self, train_rows: list[PackedRow], val_rows: list[PackedRow], pad_token_id: int,
                 batch_size: int, eval_batch_size: int, total_batches: int, seed: int):
        super().__init__()
        self.train_rows, self.val_rows = train_rows, val_rows
        self.pad_token_id, self.batch_size, self.eval_batch_size = pad_token_id, batch_size, eval_batch_size
        self.sampler = StreamSampler(len(train_rows), total_batches * batch_size, seed)

    def _collate(self, rows):
        return collate_rows(rows, self.pad_token_id)

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self):
        trainer = self.trainer
        # The stream is sharded here, not by Lightning (use_distributed_sampler=False in trainer.py):
        # its DistributedSampler would reshuffle the stream and break both the step order and resume.
        self.sampler.rank, self.sampler.world = self._rank()
        if trainer is not None and trainer.global_step > 0:
            # Resuming: the batches of the steps already taken are consumed (same order as before).
            # Under DDP Lightning splits this one stream across ranks, so every rank's rows count.
            consumed = trainer.global_step * trainer.accumulate_grad_batches * self.batch_size * trainer.world_size
            self.sampler.skip = consumed
            log.info("resuming the data stream after %d rows (step %d)", consumed, trainer.global_step)
        return torch.utils.data.DataLoader(self.train_rows, batch_size=self.batch_size, sampler=self.sampler,
                                           collate_fn=self._collate)

    def val_dataloader(self):
        rank, world = self._rank()  # each rank scores its share; the module sums loss and tokens over ranks
        return torch.utils.data.DataLoader(self.val_rows[rank::world], batch_size=self.eval_batch_size,
                                           shuffle=False, collate_fn=self._collate)
