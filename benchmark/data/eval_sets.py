"""The images a net's weights are scored on, as the paper tests, in the input normalisation the
weights were trained with.

- CIFAR-10: the 10,000 test images, one view each (Section 4.2: "For testing, we only evaluate the
  single view of the original 32x32 image").
- ImageNet: the val folder, the 224 centre crop of each image resized to 256, or the paper's
  10-crop testing (Section 3.4: the four corners and the centre, and their flips, scores averaged).

The normalisation is not in the weights, and a net fed another one than it was trained with scores
visibly worse, so it is named (``NORMALISATIONS``):

- "mean-image": the paper's "per-pixel mean subtracted" (Section 4.2), ``x / 255 - mean / 255``
  with the mean image of the training images: this project's CIFAR-10 input (``preprocess``). The
  mean image comes with our weights; for other weights it is the one of the source's training images.
- "mean-std": per channel ``(x / 255 - mean) / std`` with ImageNet's mean and std (torchvision's
  ``Normalize``): this project's ImageNet input, and what most CIFAR reproductions train with
  (akamaster's among them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark import DataError
from benchmark.data import imagenet, preprocess
from benchmark.data.beton import data_fingerprint
from benchmark.data.cifar import load_cifar10
from benchmark.data.device_loader import DeviceLoader
from benchmark.data.epochs import EpochLoader

NORMALISATIONS = ("mean-image", "mean-std")
DEFAULT_NORMALISATION = {"cifar10": "mean-image", "imagenet": "mean-std"}  # what this project trains with
CROPS = (1, 10)


@dataclass(frozen=True, eq=False)
class EvalSet:
    """A test set ready to score: its batches, and what a result on it must record."""

    loader: EpochLoader     # epoch(0): (x normalised, y); ImageNet 10-crop x is (B, 10, 3, 224, 224)
    dataset: str            # "cifar10" | "imagenet"
    source: str             # resolved: "torchvision" | "jpeg75" | "synthetic" | "folder"
    fingerprint: str        # names the exact data, as a trial's data_fingerprint does
    split: str              # "test" (CIFAR-10) | "val" (ImageNet)
    images: int
    crops: int
    normalisation: str
    mean_image: str         # where the mean image came from: "weights" | "training images" | "" (mean-std)


class _Standardised(EpochLoader):
    """Batches of a loader yielding x / 255, standardised per channel: (x / 255 - mean) / std."""

    def __init__(self, loader: EpochLoader, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> None:
        self.loader = loader
        self.num_examples, self.batch_size, self.drop_last = loader.num_examples, loader.batch_size, loader.drop_last
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def epoch(self, index: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader.epoch(index):
            yield (x - self.mean) / self.std, y


def check_choice(normalisation: str, crops: int) -> None:
    """A DataError naming the value unless both are known."""
    if crops not in CROPS:
        raise DataError(f"--crops {crops}: expected 1 (the centre crop) or 10 (the paper's 10-crop testing, Section 3.4)")
    if normalisation not in NORMALISATIONS:
        raise DataError(f"--normalisation {normalisation}: expected one of {', '.join(NORMALISATIONS)}")


def cifar10_test(source: str, root: str | Path | None, normalisation: str, mean_image: np.ndarray | None,
                 batch_size: int, device: torch.device, crops: int = 1) -> EvalSet:
    """CIFAR-10's test images from `source`; `mean_image` (float32 (32, 32, 3), 0..255) is the one
    the weights were trained with, else (mean-image) the one of the source's training images."""
    check_choice(normalisation, crops)
    if crops != 1:
        raise DataError(f"--crops {crops}: CIFAR-10 is tested on the single 32x32 image (Section 4.2); 10 crops are ImageNet's")
    data = load_cifar10(source=source, split="train50k", root=root)
    if normalisation == "mean-image":
        mean, origin = (mean_image, "weights") if mean_image is not None else (preprocess.mean_image(data.x_train), "training images")
    else:
        mean, origin = np.zeros(data.x_eval.shape[1:], dtype=np.float32), ""
    # The same loader (and so the same arithmetic) as a trial's evaluation (loaders.build_loaders).
    loader: EpochLoader = DeviceLoader(data.x_eval, data.y_eval, mean, batch_size=batch_size, device=device)
    if normalisation == "mean-std":
        loader = _Standardised(loader, imagenet.MEAN, imagenet.STD, device)
    return EvalSet(loader, "cifar10", data.source, f"{data.source}:{data_fingerprint(data)}", data.eval_split,
                   len(data.y_eval), 1, normalisation, origin)


def imagenet_val(root: str | Path, normalisation: str, crops: int, batch_size: int, device: torch.device,
                 num_workers: int = 2) -> EvalSet:
    """The val images of an ImageFolder tree (`root/train` fixes the class order), 1 or 10 crops."""
    check_choice(normalisation, crops)
    if normalisation != "mean-std":
        raise DataError(f"--normalisation {normalisation}: the ImageNet loaders standardise per channel (mean-std); "
                        "no per-pixel mean image at 224 is held")
    from benchmark.data.loaders import build_imagenet_loaders

    _, loader = build_imagenet_loaders(root, batch_size=batch_size, device=device, eval_batch_size=batch_size,
                                       num_workers=num_workers, ten_crop=crops == 10, shuffle=False)
    return EvalSet(loader, "imagenet", "folder", f"folder:{imagenet.folder_fingerprint(root)}", "val",
                   loader.num_examples, crops, normalisation, "")
