"""The "ffcv" loader: FFCV's ``Loader`` over .beton files, with the paper's augmentation.

FFCV's own ``RandomTranslate``/``RandomHorizontalFlip`` draw from numba's unseeded per-thread RNG,
so two runs never see the same crops. To honour the loader contract (deterministic for (seed,
epoch)) this module adds :class:`SeededCropFlip`, the same zero-pad-4 crop + flip (Section 4.2) as
one numba operation whose draws are a hash of (seed, the batch's sample indices, the sample index):
the batch composition changes every epoch with the shared per-epoch permutation
(:class:`SharedEpochOrder`, the same order as the "device" and "torch" loaders), so the crops do
too. (With ``shuffle=False`` every epoch has the same batches and hence the same crops.)

FFCV's compiler sets torch's thread count to the loader's ``num_workers`` whenever an epoch starts;
:class:`FfcvEpochLoader` puts the caller's setting back. The ImageNet pipeline on the same base is
:mod:`benchmark.data.ffcv_imagenet`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import SimpleRGBImageDecoder
from ffcv.loader import Loader
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from ffcv.transforms import Squeeze, ToDevice, ToTensor, ToTorchImage
from ffcv.traversal_order.base import TraversalOrder

from benchmark import BenchmarkError
from benchmark.data import preprocess
from benchmark.data.epochs import EpochLoader


@numba.njit(inline="always")
def _splitmix64(z: np.uint64) -> np.uint64:
    """SplitMix64 finaliser: a stateless hash, so every numba thread gets the same draws."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit
def batch_key(seed: np.uint64, indices: np.ndarray) -> np.uint64:
    """A hash of the seed and the batch's sample indices: the batches change every epoch with the
    shared permutation, so the draws keyed on them do too."""
    key = np.uint64(seed)
    for j in range(len(indices)):
        key = _splitmix64(key ^ np.uint64(indices[j]))
    return key


class SeededCropFlip(Operation):
    """Zero-pad ``padding`` px, take a random crop of the original size, flip with p = 1/2."""

    def __init__(self, seed: int, padding: int = preprocess.PAD) -> None:
        super().__init__()
        self.seed = seed
        self.padding = padding

    def generate_code(self):
        my_range = Compiler.get_iterator()
        pad = self.padding
        span = np.uint64(2 * pad + 1)
        seed = np.uint64(self.seed)

        def crop_flip(images, dst, indices):
            n, h, w, _ = images.shape
            dst[:] = 0
            dst[:, pad:pad + h, pad:pad + w] = images
            key = batch_key(seed, indices)
            for i in my_range(n):
                z = _splitmix64(key ^ np.uint64(indices[i]))
                y = np.int64(z % span)
                x = np.int64((z >> np.uint64(16)) % span)
                if (z >> np.uint64(32)) & np.uint64(1):
                    images[i] = dst[i, y:y + h, x:x + w][:, ::-1]
                else:
                    images[i] = dst[i, y:y + h, x:x + w]
            return images

        crop_flip.is_parallel = True
        crop_flip.with_indices = True
        return crop_flip

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        h, w, c = previous_state.shape
        return (replace(previous_state, jit_mode=True),
                AllocationQuery((h + 2 * self.padding, w + 2 * self.padding, c), previous_state.dtype))


class SharedEpochOrder(TraversalOrder):
    """The per-epoch permutation shared with the other loaders (:func:`preprocess.epoch_order`),
    and under ``distributed=True`` this rank's share of it (:func:`shard`).

    ffcv 1.0.2's Loader accepts a custom order only as an *instance* that it calls with itself
    (``order(loader)``), so the binding to the loader happens in ``__call__``.
    """

    def __init__(self, seed: int, shuffle: bool, pad: bool = True) -> None:  # bound to a loader in __call__
        self.order_seed = seed
        self.shuffle = shuffle
        self.pad = pad

    def __call__(self, loader: Loader) -> SharedEpochOrder:
        self.loader = loader
        self.indices = loader.indices
        self.seed = loader.seed
        self.distributed = loader.distributed
        self.sampler = None
        return self

    def sample_order(self, epoch: int) -> np.ndarray:
        order = preprocess.epoch_order(len(self.indices), self.order_seed, epoch, self.shuffle).numpy()
        if self.distributed:
            if not torch.distributed.is_initialized():
                raise BenchmarkError("the ffcv loader with distributed=True needs an initialised torch.distributed process group")
            order = shard(order, torch.distributed.get_rank(), torch.distributed.get_world_size(), self.pad)
        return self.indices[order]


def shard(order: np.ndarray, rank: int, world: int, pad: bool) -> np.ndarray:
    """Rank ``rank``'s share of an epoch's order: every ``world``-th position from ``rank``.
    ``pad`` (training) first repeats the order's head up to a multiple of ``world``, as torch's
    DistributedSampler does, so every rank takes the same number of steps; without it (evaluation)
    every image is in exactly one share."""
    if pad and len(order) % world:
        order = np.concatenate([order, order[:world - len(order) % world]])
    return order[rank::world]


class FfcvEpochLoader(EpochLoader):
    """An FFCV ``Loader`` over a beton behind the loader interface: ``len``, ``epoch(index)``,
    ``iter``, ``num_examples`` (this rank's share under ``distributed``). Subclasses give the image
    pipeline up to a tensor on the loader's device and :meth:`finish` (what turns FFCV's batch into
    the float32 NCHW input; FFCV reuses its batch buffers, so it must return a new tensor)."""

    def __init__(self, beton: Path, image_ops: list[Operation], batch_size: int, device: torch.device,
                 seed: int, shuffle: bool, drop_last: bool, num_workers: int, distributed: bool = False) -> None:
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.beton = Path(beton)
        threads = torch.get_num_threads()
        # Squeeze(1), not Squeeze(): a last batch of one image keeps its batch dimension.
        label_ops: list = [IntDecoder(), ToTensor(), Squeeze(1)]
        if self.device.type != "cpu":
            label_ops.append(ToDevice(self.device, non_blocking=True))
        self._loader = Loader(str(self.beton), batch_size=batch_size, num_workers=max(num_workers, 1),
                              order=SharedEpochOrder(seed, shuffle, pad=drop_last), seed=seed, drop_last=drop_last,
                              distributed=distributed, pipelines={"image": image_ops, "label": label_ops}, os_cache=True)
        torch.set_num_threads(threads)
        self.num_examples = len(self._loader.first_traversal_order)

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def epoch(self, index: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        threads = torch.get_num_threads()
        self._loader.next_epoch = index
        batches = iter(self._loader)
        try:
            for step, (images, labels) in enumerate(batches):
                if step == 0:  # the loader thread has set torch's threads by now: put them back
                    torch.set_num_threads(threads)
                yield self.finish(images), labels.to(torch.int64, copy=True)
        finally:
            batches.close()
            torch.set_num_threads(threads)


class FfcvLoader(FfcvEpochLoader):
    """The CIFAR-10 "ffcv" loader: raw 32x32 pixels, the seeded crop + flip, the mean image."""

    def __init__(self, beton: Path, mean: np.ndarray, batch_size: int, device: torch.device | str = "cpu",
                 seed: int = 0, augment: bool = False, shuffle: bool = False, drop_last: bool = False,
                 num_workers: int = 2) -> None:
        device = torch.device(device)
        image_ops: list = [SimpleRGBImageDecoder()]
        if augment:
            image_ops.append(SeededCropFlip(seed))
        image_ops.append(ToTensor())
        if device.type != "cpu":
            image_ops.append(ToDevice(device, non_blocking=True))
        image_ops.append(ToTorchImage())
        super().__init__(beton, image_ops, batch_size, device, seed, shuffle, drop_last, num_workers)
        self._mean = preprocess.mean_chw01(mean, self.device)

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        return preprocess.normalise(images, self._mean)  # a new tensor
