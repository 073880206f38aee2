"""The "torch" loader: a ``torch.utils.data.DataLoader`` with torchvision transforms per PIL image.

This is the pipeline of the usual PyTorch CIFAR reproductions (``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()``, ``ToTensor()``, then the paper's mean-image subtraction, Section 4.2),
kept as the portable fallback and as the baseline the other loaders are measured against. Images go
through PIL one at a time, exactly as ``torchvision.datasets.CIFAR10`` hands them out.

Determinism for (seed, epoch): the order is the shared per-epoch permutation
(:func:`preprocess.epoch_order`); with workers, the DataLoader seeds each worker from a generator
seeded per epoch; without workers, the transforms' draws from torch's global RNG run inside
``fork_rng`` from a per-epoch seed, so the caller's RNG state is left untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from benchmark.data import preprocess
from benchmark.data.epochs import EpochLoader, check_shard

if TYPE_CHECKING:
    from torchvision import transforms


class SubtractMeanImage:
    """Subtract the training set's per-pixel mean (float32 CHW in [0, 1] units). A class, not a
    lambda, so that worker processes can pickle it."""

    def __init__(self, mean01: torch.Tensor) -> None:
        self.mean01 = mean01

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image - self.mean01


class ArrayImageDataset(Dataset):
    """uint8 NHWC arrays served as (transformed PIL image, label), like torchvision's CIFAR10."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: transforms.Compose) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


class FixedOrderSampler(Sampler[int]):
    def __init__(self, order: Sequence[int]) -> None:
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)


def cifar_torch_loader(images: np.ndarray, labels: np.ndarray, mean: np.ndarray, augment: bool = False,
                       **options) -> TorchLoader:
    """The usual CIFAR pipeline: PIL image -> (crop, flip) -> ToTensor -> mean subtraction."""
    return TorchLoader(ArrayImageDataset(images, labels, cifar_transform(mean, augment)), **options)


def cifar_transform(mean: np.ndarray, augment: bool) -> transforms.Compose:
    # torchvision here, not at import: it costs a process about 1.4 s (it imports torch._dynamo), and
    # only this loader needs it (a Ray trial on the device loader never does)
    from torchvision import transforms

    steps: list = []
    if augment:  # Section 4.2: zero-pad 4, random 32x32 crop, horizontal flip
        steps += [transforms.RandomCrop(preprocess.SIZE, padding=preprocess.PAD),
                  transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), SubtractMeanImage(preprocess.mean_chw01(mean))]
    return transforms.Compose(steps)


class TorchLoader(EpochLoader):
    """Same interface as :class:`DeviceLoader`: ``len``, ``epoch(index)``, ``iter``, ``num_examples``,
    over any map-style dataset of (image tensor, label) (CIFAR arrays or ImageNet folders).

    ``shard=(rank, ranks)``, a data-parallel rank's share: training (``drop_last``) yields the rank's
    ``batch_size / ranks`` images of each global batch of the single-process order; evaluation the
    rank's contiguous share of the images (every image in exactly one share). Only the rank's own
    images are decoded.
    """

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device | str = "cpu",
                 seed: int = 0, shuffle: bool = False, drop_last: bool = False, num_workers: int = 2,
                 shard: tuple[int, int] = (0, 1)) -> None:
        rank, ranks = shard
        check_shard(shard, batch_size if drop_last else None)
        self.device = torch.device(device)
        self.shard = shard
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.dataset = dataset
        # Evaluation shards are contiguous ranges: this rank's images are all it counts.
        self._first = 0 if drop_last else len(dataset) * rank // ranks
        self.num_examples = len(dataset) if drop_last else len(dataset) * (rank + 1) // ranks - self._first

    def epoch(self, index: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = preprocess.epoch_order(self.num_examples, self.seed, index, self.shuffle) + self._first
        rank, ranks = self.shard
        batch_size = self.batch_size
        if ranks > 1 and self.drop_last:  # each global batch's slice for this rank
            batch_size //= ranks
            batches = order[:len(self) * self.batch_size].view(len(self), ranks, batch_size)
            order = batches[:, rank].flatten()
        augment_seed = preprocess.stream_seed(self.seed, index, 1)
        loader = DataLoader(self.dataset, batch_size=batch_size, sampler=FixedOrderSampler(order.tolist()),
                            drop_last=self.drop_last, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(augment_seed))
        batches = iter(loader) if self.num_workers > 0 else _isolated_rng(loader, augment_seed)
        for images, labels in batches:
            yield (images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True))


def _isolated_rng(loader: DataLoader, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Fetch batches in-process with torch's global RNG seeded for this epoch, restoring the
    caller's RNG around every fetch (the training step runs between fetches)."""
    batches = iter(loader)
    state = None
    while True:
        with torch.random.fork_rng(devices=[]):
            if state is None:
                torch.manual_seed(seed)
            else:
                torch.set_rng_state(state)
            try:
                batch = next(batches)
            except StopIteration:
                return
            state = torch.get_rng_state()
        yield batch
