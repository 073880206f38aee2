"""ImageNet from an ImageFolder-style tree (``ROOT/train/<class>/*.jpg``, ``ROOT/val/<class>/*.jpg``).

The paper's pipeline (Section 3.4):

- training: the shorter side resized to a random length in [256, 480] (scale augmentation), a
  random 224x224 crop, a random horizontal flip, per-channel mean/std normalisation (the paper says
  "per-pixel mean subtracted"; the per-channel form is what fb.resnet.torch and torchvision use),
  and the AlexNet "PCA colour augmentation" (Krizhevsky et al. 2012) with std 0.1;
- evaluation: single 224 centre crop after resizing the shorter side to 256, or the paper's
  10-crop testing (four corners and the centre, and their flips; scores averaged), used for the
  comparisons of Tables 2 and 3.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from benchmark import DataError
from benchmark.hardware import cores

if TYPE_CHECKING:
    from torchvision import transforms

# torchvision is imported where a transform is built, not with this module: it costs a process about
# 1.4 s (it imports torch._dynamo), and the driver imports this module for the folder's fingerprint.

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# The ImageNet RGB covariance's eigenvalues/eigenvectors used for AlexNet-style lighting noise (the
# values of fb.resnet.torch's datasets/imagenet.lua and most ports).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))
LIGHTING_STD = 0.1  # alpha's standard deviation, as AlexNet and fb.resnet.torch
TRAIN_SCALE = (256, 480)
CROP = 224
EVAL_RESIZE = 256


@dataclass(frozen=True)
class ImageFolderSplit:
    """One split of an ImageFolder tree: class names (sorted) and (path, label) samples."""

    folder: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]

    def __len__(self) -> int:
        return len(self.samples)


def scan_split(folder: str | Path, classes: tuple[str, ...] | None = None) -> ImageFolderSplit:
    """List ``folder/<class>/<image>``; ``classes`` (the training split's) fixes the label order."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected class subfolders of images)")
    found = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if classes is None:
        classes = tuple(found)
    elif unknown := sorted(set(found) - set(classes)):
        raise DataError(f"{folder}: class folders {unknown[:5]} are not among the training classes")
    label_of = {name: label for label, name in enumerate(classes)}
    samples = []
    for name in found:
        for path in sorted((folder / name).rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                samples.append((path, label_of[name]))
    if not samples:
        raise DataError(f"{folder}: no images found (expected {folder}/<class>/<image>, "
                        f"extensions {', '.join(IMAGE_EXTENSIONS)})")
    return ImageFolderSplit(folder, tuple(classes), tuple(samples))


def load_imagenet(root: str | Path) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """(train, val) splits of ``root``; val uses the training split's class order."""
    root = Path(root).expanduser()
    train = scan_split(root / "train")
    return train, scan_split(root / "val", train.classes)


def check_imagenet_folder(root: str | Path) -> tuple[ImageFolderSplit, ImageFolderSplit]:
    """Preflight before a run: the tree exists and both splits hold images (a DataError otherwise).
    It lists files only; :func:`check_images` decodes every image (slow, done before FFCV writes)."""
    return load_imagenet(root)


def folder_fingerprint(root: str | Path) -> str:
    """A hash of an ImageFolder tree's listing: every image's relative path, label and size. It names
    the data in a run's rows and the tree an FFCV beton was written from."""
    root = Path(root)
    digest = hashlib.sha256()
    for split_name, split in zip(("train", "val"), check_imagenet_folder(root)):
        for path, label in split.samples:
            digest.update(f"{split_name}|{Path(path).relative_to(root)}|{label}|{Path(path).stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def open_rgb(path: Path) -> Image.Image:
    """Decode an image fully (so a truncated file fails here), as RGB; a DataError names the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise DataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from None


def _check_chunk(paths: list[Path]) -> None:
    for path in paths:
        open_rgb(path)


def check_images(split: ImageFolderSplit, workers: int | None = None, chunk: int = 256) -> None:
    """Decode every image once (in processes); the first that fails is a DataError naming it."""
    paths = [path for path, _ in split.samples]
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    workers = workers or cores()
    if workers <= 1 or len(chunks) <= 1:
        for part in chunks:
            _check_chunk(part)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        list(pool.map(_check_chunk, chunks))


class RandomShorterSide:
    """Resize so the shorter side is a uniform random integer in [low, high] (Section 3.4's scale
    augmentation), keeping the aspect ratio."""

    def __init__(self, low: int = TRAIN_SCALE[0], high: int = TRAIN_SCALE[1]) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Image.Image) -> Image.Image:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        size = int(torch.randint(self.low, self.high + 1, ()).item())
        return TF.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=True)


class Lighting:
    """AlexNet PCA colour augmentation on a [0, 1] CHW tensor: add ``eigvec @ (alpha * eigval)``
    to every pixel, alpha ~ N(0, std^2) per image and channel."""

    def __init__(self, std: float = LIGHTING_STD, eigval=PCA_EIGVAL, eigvec=PCA_EIGVEC) -> None:
        self.std = std
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    def shift(self, alpha: torch.Tensor) -> torch.Tensor:
        """``eigvec @ (alpha * eigval)`` for alpha (3,), or row by row for alpha (n, 3)."""
        return (alpha * self.eigval) @ self.eigvec.T

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return image
        alpha = torch.randn(3) * self.std
        return image + self.shift(alpha).view(3, 1, 1)


class StackCrops:
    """Tensor + normalise each crop of ``TenCrop`` and stack them: (10, 3, 224, 224)."""

    def __init__(self) -> None:
        from torchvision import transforms

        self.normalise = transforms.Normalize(MEAN, STD)

    def __call__(self, crops: tuple[Image.Image, ...]) -> torch.Tensor:
        from torchvision.transforms import functional as TF

        return torch.stack([self.normalise(TF.to_tensor(crop)) for crop in crops])


def train_transform(lighting_std: float = LIGHTING_STD) -> transforms.Compose:
    from torchvision import transforms

    return transforms.Compose([RandomShorterSide(), transforms.RandomCrop(CROP), transforms.RandomHorizontalFlip(),
                               transforms.ToTensor(), Lighting(lighting_std), transforms.Normalize(MEAN, STD)])


def eval_transform() -> transforms.Compose:
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(EVAL_RESIZE), transforms.CenterCrop(CROP),
                               transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def ten_crop_transform() -> transforms.Compose:
    """Resize the shorter side to 256, then the 10 crops of Section 3.4 (torchvision order: four
    corners, centre, then the same five of the flipped image)."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(EVAL_RESIZE), transforms.TenCrop(CROP), StackCrops()])


def ten_crop(images: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """Batched 10-crop of (B, C, H, W) images -> (B, 10, C, size, size), same order as ``TenCrop``."""
    h, w = images.shape[-2:]
    if h < size or w < size:
        raise DataError(f"ten_crop: images of {h}x{w} are smaller than the {size} crop")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))  # torchvision's centre
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    crops = [images[..., y:y + size, x:x + size] for y, x in corners]
    flipped = images.flip(-1)
    crops += [flipped[..., y:y + size, x:x + size] for y, x in corners]
    return torch.stack(crops, dim=1)


@torch.no_grad()
def ten_crop_predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities averaged over the 10 crops (Section 3.4: "average the scores").

    ``images``: (B, 10, C, h, w) from :func:`ten_crop_transform`, or (B, C, H, W) normalised
    images with the shorter side already 256 (cropped here). Returns (B, num_classes).
    """
    crops = images if images.dim() == 5 else ten_crop(images)
    batch, views = crops.shape[:2]
    logits = model(crops.flatten(0, 1))
    return logits.softmax(dim=-1).view(batch, views, -1).mean(dim=1)


class ImageFolderDataset(Dataset):
    def __init__(self, split: ImageFolderSplit, transform: transforms.Compose) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.split.samples[index]
        return self.transform(open_rgb(path)), label
