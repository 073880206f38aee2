"""The paper's CIFAR-10 preprocessing (Section 4.2), shared by every loader.

- Input: "the per-pixel mean subtracted": the mean image (32x32x3) of the *training* set, no
  division by a standard deviation. Pixels are scaled to [0, 1] first (as ``ToTensor`` does), so
  every loader computes exactly ``x / 255 - mean / 255`` in float32 and they agree bit for bit.
- Training augmentation: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled
  from the padded image or its horizontal flip"; zero padding. Evaluation: the original image.
"""

from __future__ import annotations

import numpy as np
import torch

PAD = 4
SIZE = 32


def mean_image(x_train: np.ndarray) -> np.ndarray:
    """Per-pixel mean of the training images, float32 (32, 32, 3) in 0..255."""
    total = np.zeros(x_train.shape[1:], dtype=np.float64)
    for start in range(0, len(x_train), 10_000):  # chunks: no 50k x 3072 float64 temporary
        total += x_train[start:start + 10_000].sum(axis=0, dtype=np.float64)
    return (total / max(len(x_train), 1)).astype(np.float32)


def mean_chw01(mean: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """The mean image as a float32 (3, 32, 32) tensor in [0, 1] units."""
    return (torch.from_numpy(np.ascontiguousarray(mean.transpose(2, 0, 1))) / 255.0).to(device)


def normalise(x_uint8: torch.Tensor, mean01: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW -> float32 contiguous NCHW, ``x / 255 - mean / 255``."""
    out = x_uint8.to(torch.float32, memory_format=torch.contiguous_format)
    return out.div_(255.0).sub_(mean01)


def stream_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed for one (seed, epoch, stream): distinct streams for shuffling and
    augmentation, so changing one never shifts the other."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint64)[0] >> 1)


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """The training order of one epoch: the same permutation in every loader (int64, CPU)."""
    if not shuffle:
        return torch.arange(num_examples)
    generator = torch.Generator().manual_seed(stream_seed(seed, epoch, 0))
    return torch.randperm(num_examples, generator=generator)


def crop_flip_params(count: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-position crop offsets (dy, dx in 0..2*PAD) and flip flags for one epoch (CPU)."""
    generator = torch.Generator().manual_seed(stream_seed(seed, epoch, 1))
    offsets = torch.randint(0, 2 * PAD + 1, (2, count), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5
    return offsets[0], offsets[1], flips
