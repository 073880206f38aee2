"""What every loader shares: batches per epoch, and `iter(loader)` = the next epoch.

A loader subclass sets `num_examples`, `batch_size` and `drop_last` and implements
`epoch(index)`, deterministic for (seed, index) so that a resumed trial sees the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def check_shard(shard: tuple[int, int], batch_size: int | None) -> None:
    """A data-parallel rank's share (rank, ranks); ranks must split each global batch of
    `batch_size` evenly (None: an evaluation share, a contiguous range, splits no batch)."""
    rank, ranks = shard
    if not 0 <= rank < ranks or (batch_size is not None and batch_size % ranks):
        raise ValueError(f"shard {shard}: expected 0 <= rank < ranks, and ranks dividing the batch of {batch_size}")


class EpochLoader:
    num_examples: int
    batch_size: int
    drop_last: bool
    _next_epoch: int = 0

    def __len__(self) -> int:
        if self.drop_last:  # training: every step a full batch, as in the paper
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        index, self._next_epoch = self._next_epoch, self._next_epoch + 1
        return self.epoch(index)

    def epoch(self, index: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def endless(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of epochs 0, 1, 2, ... without end, for loops that count steps, not epochs."""
        index = 0
        while True:
            yield from self.epoch(index)
            index += 1
