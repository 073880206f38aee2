"""``build_loaders``: one interface over the three CIFAR-10 loaders ("device", "ffcv", "torch"); and
``build_imagenet_loaders``: the same interface over an ImageNet folder ("torch", "ffcv").

Every loader yields ``(x, y)`` with ``x`` float32 NCHW (``x / 255 - mean_image / 255``, the
paper's per-pixel mean subtraction, Section 4.2) and ``y`` int64, both on ``device``; ``len()`` is
batches per epoch; ``epoch(index)`` is deterministic for (seed, index), reshuffled every epoch;
iterating the loader runs the next epoch; ``num_examples`` is the number of images. All three use
the same per-epoch order, so with ``augment=False`` they yield identical batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark import DataError
from benchmark.data import preprocess
from benchmark.data.cifar import CifarData
from benchmark.data.device_loader import DeviceLoader
from benchmark.data.epochs import EpochLoader
from benchmark.data.torch_loader import TorchLoader, cifar_torch_loader
from benchmark.hardware import default_cache_dir

LOADERS = ("device", "ffcv", "torch")


def build_loaders(data: CifarData, loader: str = "device", batch_size: int = 128,
                  device: torch.device | str = "cpu", seed: int = 0, augment: bool = True,
                  eval_batch_size: int = 1000, num_workers: int = 2, beton_dir: str | Path | None = None,
                  shuffle: bool = True, shard: tuple[int, int] = (0, 1),
                  mean: np.ndarray | None = None) -> tuple[EpochLoader, EpochLoader]:
    """(train_loader, eval_loader) for ``data``.

    The training loader shuffles (``shuffle``), augments (``augment``: pad 4, random 32x32 crop,
    horizontal flip) and drops the last partial batch so every step is a full batch, as in the
    paper; the evaluation loader keeps the original order, every image and no augmentation. The
    mean image is the training split's. ``num_workers`` is the DataLoader's worker processes
    ("torch") or FFCV's threads ("ffcv"); the device loader uses none. ``beton_dir`` is where the
    "ffcv" loader writes/reuses its .beton files (default ``~/.cache/resnet-benchmark/beton``).

    ``shard=(rank, ranks)`` (the "device" loader): a data-parallel rank's loaders. Training yields
    the rank's ``batch_size / ranks`` images of each global batch of ``batch_size``; evaluation
    covers the rank's contiguous share of the evaluation images, so the ranks together see every
    image exactly once (no padding, no duplicates) and their sums add up to one process's.
    """
    if loader not in LOADERS:
        raise DataError(f"unknown loader {loader!r}; expected one of {list(LOADERS)}")
    if batch_size < 1 or eval_batch_size < 1:
        raise DataError(f"batch sizes must be positive, got {batch_size} and {eval_batch_size}")
    if batch_size > len(data.x_train):
        raise DataError(f"batch_size {batch_size} exceeds the {len(data.x_train)} training images")
    rank, ranks = shard
    if ranks > 1 and loader != "device":
        raise DataError(f"loader {loader!r}: data-parallel CIFAR-10 ranks shard the 'device' loader; use loader: device")
    if ranks > 1 and len(data.y_eval) < ranks:
        raise DataError(f"{len(data.y_eval)} evaluation images cannot give each of {ranks} ranks a share")
    mean = preprocess.mean_image(data.x_train) if mean is None else mean
    train_options = dict(batch_size=batch_size, device=device, seed=seed, augment=augment,
                         shuffle=shuffle, drop_last=True)
    eval_options = dict(batch_size=eval_batch_size, device=device, seed=seed, augment=False,
                        shuffle=False, drop_last=False)
    if loader == "device":
        first, last = len(data.y_eval) * rank // ranks, len(data.y_eval) * (rank + 1) // ranks
        return (DeviceLoader(data.x_train, data.y_train, mean, shard=shard, **train_options),
                DeviceLoader(data.x_eval[first:last], data.y_eval[first:last], mean, **eval_options))
    if loader == "torch":
        return (cifar_torch_loader(data.x_train, data.y_train, mean, num_workers=num_workers, **train_options),
                cifar_torch_loader(data.x_eval, data.y_eval, mean, num_workers=num_workers, **eval_options))
    from benchmark.data.beton import import_ffcv, write_cifar_betons

    import_ffcv()  # a DataError with install instructions when FFCV is missing
    from benchmark.data.ffcv_loader import FfcvLoader

    beton_dir = Path(beton_dir) if beton_dir is not None else default_cache_dir() / "beton"
    train_beton, eval_beton = write_cifar_betons(data, beton_dir, fields="raw", num_workers=num_workers)
    return (FfcvLoader(train_beton, mean, num_workers=num_workers, **train_options),
            FfcvLoader(eval_beton, mean, num_workers=num_workers, **eval_options))


def build_imagenet_loaders(root: str | Path, batch_size: int = 256, device: torch.device | str = "cpu",
                           seed: int = 0, eval_batch_size: int = 100, num_workers: int = 2,
                           ten_crop: bool = False, shuffle: bool = True, loader: str = "torch",
                           shard: tuple[int, int] = (0, 1)) -> tuple[EpochLoader, EpochLoader]:
    """(train_loader, eval_loader) with the loader interface of :func:`build_loaders`.
    The eval loader yields (B, 3, 224, 224) centre crops, or (B, 10, 3, 224, 224) with ``ten_crop``
    (``evaluate`` and :func:`benchmark.data.imagenet.ten_crop_predict` average over the crops).

    ``loader="torch"``: the JPEG tree through torch's DataLoader and the transforms of
    :mod:`benchmark.data.imagenet` (PIL).
    ``loader="ffcv"``: the same pipeline through FFCV over ``root/ffcv``'s betons
    (:mod:`benchmark.data.ffcv_imagenet`; a DataError says how to install FFCV or write the betons);
    ``shard=(rank, ranks)``: a data-parallel rank's loaders; ``batch_size`` is the global batch, of
    which each rank takes ``batch_size / ranks`` per step, and evaluation covers each image once over
    all ranks. The torch loader takes the rank's slice of each single-process global batch; FFCV
    (``distributed=True``, under the initialised process group) every ``ranks``-th image of the epoch's order.
    """
    rank, ranks = shard
    if loader == "ffcv":
        from benchmark.data.beton import import_ffcv

        import_ffcv()  # a DataError with the install line when FFCV is missing
        from benchmark.data.ffcv_imagenet import build_ffcv_imagenet_loaders

        return build_ffcv_imagenet_loaders(root, batch_size // ranks, device, seed, eval_batch_size, num_workers,
                                           ten_crop, shuffle, distributed=ranks > 1)
    if loader != "torch":
        raise DataError(f"unknown imagenet loader {loader!r}; expected 'torch' or 'ffcv'")
    from benchmark.data import imagenet  # here: PIL and torchvision's transforms, for ImageNet only

    train, val = imagenet.load_imagenet(root)
    eval_transform = imagenet.ten_crop_transform() if ten_crop else imagenet.eval_transform()
    return (TorchLoader(imagenet.ImageFolderDataset(train, imagenet.train_transform()), batch_size, device, seed,
                        shuffle=shuffle, drop_last=True, num_workers=num_workers, shard=shard),
            TorchLoader(imagenet.ImageFolderDataset(val, eval_transform), eval_batch_size, device, seed,
                        shuffle=False, drop_last=False, num_workers=num_workers, shard=shard))
