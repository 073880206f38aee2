"""The "device" loader: the whole uint8 dataset lives on the device (as in airbench).

Shuffling is one ``torch.randperm`` per epoch, and the paper's augmentation (Section 4.2: zero-pad
4, random 32x32 crop, horizontal flip) is one ``torch.take`` per batch from a copy of the dataset
padded once: no worker processes, no per-image Python. (``take`` with precomputed flat indices
measured 2-3x faster on CPU than 4-d advanced indexing or two ``gather`` calls.) On a GPU this removes the input pipeline
from the picture; on a CPU it is still an order of magnitude faster than per-image PIL transforms.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data import preprocess


class DeviceLoader:
    """Batches of (float32 NCHW normalised images, int64 labels) on ``device``.

    ``epoch(index)`` is deterministic for (seed, index); iterating the loader itself runs the
    next epoch (0, 1, 2, ...). Training loaders drop the last partial batch (every step a full
    batch of 128, as in the paper); evaluation loaders keep it.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: np.ndarray, batch_size: int,
                 device: torch.device | str = "cpu", seed: int = 0, augment: bool = False,
                 shuffle: bool = False, drop_last: bool = False) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_examples = len(images)
        with warnings.catch_warnings():  # the arrays are read-only; torch never writes to them here
            warnings.simplefilter("ignore", UserWarning)
            nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
            self._labels = torch.from_numpy(labels).to(self.device)
        if augment:
            # Pad once (zeros, as in the paper) so a crop is a window of the padded image, and
            # keep it flat: a crop+flip is then one gather of precomputed flat indices.
            self._images = F.pad(nchw.to(self.device), (preprocess.PAD,) * 4).reshape(-1)
            side = preprocess.SIZE + 2 * preprocess.PAD
            self._image_stride = 3 * side * side
            r = torch.arange(preprocess.SIZE, device=self.device)
            channel_row = (torch.arange(3, device=self.device) * side * side).view(3, 1, 1) + r.view(1, -1, 1) * side
            self._window = channel_row + r.view(1, 1, -1)                                      # (3, 32, 32)
            self._window_flipped = channel_row + (preprocess.SIZE - 1 - r).view(1, 1, -1)
            self._row_stride = side
        else:
            self._images = nchw.to(self.device).contiguous()
        self._mean = preprocess.mean_chw01(mean, self.device)
        self._next_epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        index, self._next_epoch = self._next_epoch, self._next_epoch + 1
        return self.epoch(index)

    def epoch(self, index: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = preprocess.epoch_order(self.num_examples, self.seed, index, self.shuffle).to(self.device)
        if self.augment:
            dy, dx, flip = preprocess.crop_flip_params(self.num_examples, self.seed, index)
            # Flat offset of each crop's top-left corner in the padded, flattened dataset.
            corner = (order * self._image_stride + (dy * self._row_stride + dx).to(self.device)).view(-1, 1, 1, 1)
            flip = flip.to(self.device).view(-1, 1, 1, 1)
        for b in range(len(self)):
            window = slice(b * self.batch_size, (b + 1) * self.batch_size)
            chosen = order[window]
            if self.augment:
                flat = torch.where(flip[window], self._window_flipped, self._window).add_(corner[window])
                images = self._images.take(flat)                                         # (B, 3, 32, 32)
            else:
                images = self._images[chosen]
            yield preprocess.normalise(images, self._mean), self._labels[chosen]
