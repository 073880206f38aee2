"""ImageNet ``.beton`` files for the "ffcv" loader: where they live, how they are written, and how
a run knows they belong to its ImageFolder tree.

``python -m benchmark data write-beton --dataset imagenet --root ROOT`` writes
``ROOT/ffcv/imagenet-train.beton`` and ``ROOT/ffcv/imagenet-val.beton`` (``--out`` elsewhere; the
loader reads ``ROOT/ffcv``, which may be a symlink to a faster disk). Images are stored as JPEG
(quality 90, FFCV's default) with the shorter side capped at 480 px and never enlarged: 480 is the
top of the paper's scale augmentation (Section 3.4, shorter side S in [256, 480]), so every S the
training decoder draws resamples real pixels, and the 256-px evaluation resize shrinks.

Next to each beton, ``<name>.beton.json`` (written atomically, after the beton) records the
format version, the source folder, the split's image and class counts, the tree's fingerprint
(:func:`benchmark.data.imagenet.folder_fingerprint`: every image's relative path, label and byte
size, the same that names the data in a run's rows) and the beton's size.
:func:`check_imagenet_betons` compares them before anything trains, so a beton of another folder,
of a folder changed since, of an older format, or replaced without its record is a DataError naming
the file and the command that rewrites it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image

from benchmark import DataError
from benchmark.data.beton import write_beton
from benchmark.data.imagenet import (TRAIN_SCALE, ImageFolderSplit, check_images, folder_fingerprint, load_imagenet,
                                     open_rgb)

# Version 1: two fields (image: RGBImageField, label: IntField), shorter side capped, this sidecar.
# Bump when the layout changes, so that betons of an older writer are named and rewritten.
BETON_FORMAT_VERSION = 1
BETON_FOLDER = "ffcv"
SPLIT_NAMES = ("train", "val")


def write_command(root: Path) -> str:
    return f"python -m benchmark data write-beton --dataset imagenet --root {root}"


def beton_paths(root: str | Path) -> tuple[Path, Path]:
    """Where the loader reads the (train, val) betons of the tree at ``root``."""
    folder = Path(root).expanduser().resolve() / BETON_FOLDER
    return folder / "imagenet-train.beton", folder / "imagenet-val.beton"


def sidecar_path(beton: Path) -> Path:
    return beton.with_name(beton.name + ".json")


class FolderPairs:
    """(PIL RGB image, label) pairs of a split for FFCV's writer, the shorter side capped at
    ``max_shorter_side`` (never enlarged; 0 keeps every image whole). A module-level class, so
    that the writer's processes can use it."""

    def __init__(self, split: ImageFolderSplit, max_shorter_side: int = TRAIN_SCALE[1]) -> None:
        self.split = split
        self.max_shorter_side = max_shorter_side

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.split.samples[index]
        image = open_rgb(path)
        width, height = image.size
        short = min(width, height)
        if self.max_shorter_side and short > self.max_shorter_side:
            scale = self.max_shorter_side / short
            size = (self.max_shorter_side, int(height * scale)) if width == short else (int(width * scale), self.max_shorter_side)
            image = image.resize(size, Image.Resampling.BILINEAR)  # antialiased when shrinking
        return image, label


def write_imagenet_betons(root: str | Path, out_dir: str | Path | None = None, fields: str = "jpeg",
                          jpeg_quality: int = 90, max_shorter_side: int = TRAIN_SCALE[1],
                          num_workers: int | None = None) -> tuple[Path, Path]:
    """Write the (train, val) betons of the tree at ``root`` and their records; returns the paths.

    Every image is decoded once beforehand: FFCV's writer waits forever when a worker dies on a
    broken file, so a bad image must be a DataError (naming it) before writing. The old record is
    removed before a beton is rewritten, so an interrupted write never passes for a complete one.
    """
    if max_shorter_side < 0:
        raise DataError(f"max_shorter_side must be >= 0 (0 keeps the images whole), got {max_shorter_side}")
    root = Path(root).expanduser().resolve()
    targets = beton_paths(root)
    if out_dir is not None:
        targets = tuple(Path(out_dir).expanduser() / path.name for path in targets)
    fingerprint = folder_fingerprint(root)
    for split, path in zip(load_imagenet(root), targets):
        check_images(split, num_workers)
        sidecar = sidecar_path(path)
        sidecar.unlink(missing_ok=True)
        write_beton(FolderPairs(split, max_shorter_side), path, fields, num_workers, jpeg_quality)
        record = {"format_version": BETON_FORMAT_VERSION, "source_folder": str(root), "split": split.folder.name,
                  "images": len(split), "classes": len(split.classes), "fingerprint": fingerprint,
                  "fields": fields, "jpeg_quality": jpeg_quality, "max_shorter_side": max_shorter_side,
                  "beton_bytes": path.stat().st_size}
        # Written beside its beton and moved into place: a reader never sees half a record.
        tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, sidecar)
    return targets[0], targets[1]


def check_imagenet_betons(root: str | Path, fingerprint: str | None = None) -> tuple[Path, Path]:
    """The (train, val) betons of the tree at ``root``, checked against their records: present, of
    this format, not replaced since; with the tree's ``fingerprint`` (:func:`folder_fingerprint`,
    which scans the tree: the fleet does it once before a run), also written from this tree as it
    is now. A DataError names the file, what does not match and the command that rewrites it."""
    root = Path(root).expanduser().resolve()
    command = write_command(root)
    for path in beton_paths(root):
        if not path.is_file():
            older = sorted(path.parent.glob(path.name.replace(".beton", "-*.beton")))
            if older:
                raise DataError(f"{path}: missing; {older[0].name} beside it is of an older format "
                                f"(before version {BETON_FORMAT_VERSION}); rewrite it with: {command}")
            raise DataError(f"{path}: no FFCV .beton for data.root {root} (loader: ffcv); write it with: {command}")
        sidecar = sidecar_path(path)
        try:
            record = json.loads(sidecar.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: no {sidecar.name} beside it (an older format, or an interrupted write); "
                            f"rewrite it with: {command}") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{sidecar}: unreadable ({exc}); rewrite it with: {command}") from None
        if not isinstance(record, dict) or record.get("format_version") != BETON_FORMAT_VERSION:
            version = record.get("format_version") if isinstance(record, dict) else None
            raise DataError(f"{path}: beton format version {version}, this code reads version "
                            f"{BETON_FORMAT_VERSION}; rewrite it with: {command}")
        if fingerprint is not None and record.get("fingerprint") != fingerprint:
            raise DataError(f"{path}: written from {record.get('source_folder')} (fingerprint "
                            f"{record.get('fingerprint')}), not from {root} as it is now (fingerprint {fingerprint}); "
                            f"rewrite it with: {command}")
        size = path.stat().st_size
        if size != record.get("beton_bytes"):
            raise DataError(f"{path}: {size} bytes, but {sidecar.name} records {record.get('beton_bytes')} "
                            f"(replaced or truncated since it was written); rewrite it with: {command}")
    return beton_paths(root)
