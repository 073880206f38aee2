"""Writing FFCV ``.beton`` files from any CIFAR source (ImageNet folders: :mod:`benchmark.data.imagenet_beton`).

A beton holds two fields, ``image`` (RGB) and ``label`` (int). ``fields="raw"`` stores the
decoded pixels (lossless, what the "ffcv" loader uses by default, so it sees exactly the pixels of
the other loaders); ``fields="jpeg"`` re-encodes them as JPEG (smaller, lossy: a second
compression on top of the jpeg75 source). Files are written under a temporary name and moved into
place, so an interrupted write never leaves a beton that looks complete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from benchmark import DataError
from benchmark.data.cifar import CifarData
from benchmark.hardware import cores

FIELD_MODES = ("raw", "jpeg")
INSTALL_HINT = ("install the ffcv extra: Debian packages `pkg-config libturbojpeg0-dev libopencv-dev`, "
                "then (after torch) `pip install '.[ffcv]'` (ffcv==1.0.2, numba, opencv, pillow)")


def import_ffcv():
    """Import ffcv, or raise a DataError saying how to install it. ffcv's import sets torch to
    one thread (its compiler does), so the caller's thread count is restored."""
    import torch

    threads = torch.get_num_threads()
    try:
        import ffcv  # noqa: F401
        from ffcv import fields, loader, writer  # noqa: F401
    except ImportError as exc:
        raise DataError(f"the ffcv loader needs FFCV, which cannot be imported ({exc}); {INSTALL_HINT}") from None
    finally:
        torch.set_num_threads(threads)
    return ffcv


class ArrayPairs:
    """(HWC uint8 image, int label) pairs for FFCV's ``from_indexed_dataset`` (module level, so
    that its writer processes can use it)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images[index], int(self.labels[index])


def data_fingerprint(data: CifarData) -> str:
    """A hash of the arrays and their provenance, naming the betons written from them."""
    digest = hashlib.sha256(f"{data.source}|{data.split}|{data.x_train.shape}|{data.x_eval.shape}".encode())
    for array in (data.x_train, data.y_train, data.x_eval, data.y_eval):
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()[:16]


def _image_field(fields: str, jpeg_quality: int = 90, max_resolution: int | None = None):
    from ffcv.fields import RGBImageField

    if fields not in FIELD_MODES:
        raise DataError(f"unknown beton fields {fields!r}; expected one of {list(FIELD_MODES)}")
    return RGBImageField(write_mode="raw" if fields == "raw" else "jpg", jpeg_quality=jpeg_quality,
                         max_resolution=max_resolution)


def write_beton(dataset, out: Path, fields: str = "raw", num_workers: int | None = None,
                jpeg_quality: int = 90, max_resolution: int | None = None) -> Path:
    """Write an indexable dataset of (image, label) pairs to ``out`` atomically."""
    import_ffcv()
    from ffcv.fields import IntField
    from ffcv.writer import DatasetWriter

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    workers = num_workers or cores()
    try:
        writer = DatasetWriter(str(tmp), {"image": _image_field(fields, jpeg_quality, max_resolution),
                                          "label": IntField()}, num_workers=workers)
        writer.from_indexed_dataset(dataset)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def cifar_beton_paths(data: CifarData, out_dir: Path, fields: str = "raw") -> tuple[Path, Path]:
    stem = f"cifar10-{data.source}-{data.split}-{data_fingerprint(data)}"
    return out_dir / f"{stem}-train-{fields}.beton", out_dir / f"{stem}-{data.eval_split}-{fields}.beton"


def write_cifar_betons(data: CifarData, out_dir: str | Path, fields: str = "raw",
                       num_workers: int | None = None, overwrite: bool = False) -> tuple[Path, Path]:
    """Write (or reuse) the train and eval betons of ``data``; returns their paths. Names carry a
    fingerprint of the arrays, so betons of different data never collide."""
    if fields not in FIELD_MODES:
        raise DataError(f"unknown beton fields {fields!r}; expected one of {list(FIELD_MODES)}")
    train_path, eval_path = cifar_beton_paths(data, Path(out_dir).expanduser(), fields)
    for path, images, labels in ((train_path, data.x_train, data.y_train), (eval_path, data.x_eval, data.y_eval)):
        if overwrite or not path.is_file():
            write_beton(ArrayPairs(images, labels), path, fields, num_workers)
    return train_path, eval_path
