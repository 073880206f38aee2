"""Generated ImageNet-shaped ImageFolder trees: photo-like JPEGs (a smooth random colour field,
detail and grain), so that resampling filters agree to within a few grey levels as they do on
photographs (pure noise would exaggerate their differences). `python -m benchmark data
sample-imagenet` writes one to try the ImageNet path (torch, FFCV, data-parallel) on any machine;
the tests and the loader benchmark use the same generator."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(size: tuple[int, int], seed: int, detail: tuple[int, int] = (4, 5), grain: float = 3.0) -> np.ndarray:
    """A (height, width, 3) uint8 image of ``size`` = (width, height): a ``detail`` grid of random
    colours resized smoothly over the image, plus Gaussian grain of sd ``grain``."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(*detail, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(field + rng.normal(0, grain, field.shape), 0, 255).astype(np.uint8)


def write_photo(job: tuple[Path, tuple[int, int], int, tuple[int, int], float]) -> int:
    """Write one JPEG (quality 90); returns its size in bytes. One argument, for Pool.map."""
    path, size, seed, detail, grain = job
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo_like(size, seed, detail, grain)).save(path, quality=90)
    return path.stat().st_size


def write_tree(root: Path, classes: tuple[str, ...], train_sizes: list[tuple[int, int]],
               val_sizes: list[tuple[int, int]], seed: int = 0, detail: tuple[int, int] = (4, 5),
               grain: float = 3.0, workers: int = 1) -> list[int]:
    """``root/train/<class>/img<i>.JPEG`` for every class and train size, and ``root/val/<class>/
    val<i>.JPEG`` for the val sizes, cycled over the classes. Returns the files' sizes in bytes."""
    jobs = [(root / "train" / name / f"img{i}.JPEG", size, seed + len(train_sizes) * c + i, detail, grain)
            for c, name in enumerate(classes) for i, size in enumerate(train_sizes)]
    jobs += [(root / "val" / classes[i % len(classes)] / f"val{i}.JPEG", size, seed + 10**6 + i, detail, grain)
             for i, size in enumerate(val_sizes)]
    if workers <= 1:
        return [write_photo(job) for job in jobs]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(write_photo, jobs, chunksize=16)


# Typical ImageNet photo sizes (width, height): most are about 500x375 in either orientation.
TYPICAL_SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (640, 480), (400, 300))


def write_sample(root: Path, classes: int = 4, train_per_class: int = 16, val: int = 16, seed: int = 0,
                 workers: int = 1) -> tuple[int, int]:
    """A small ImageNet-shaped tree at ``root`` (class folders named like WordNet ids); returns
    (files, bytes)."""
    names = tuple(f"n{10_000_000 + c:08d}" for c in range(classes))
    sizes = [TYPICAL_SIZES[(seed + i) % len(TYPICAL_SIZES)] for i in range(train_per_class + val)]
    written = write_tree(Path(root), names, sizes[:train_per_class], sizes[train_per_class:], seed=seed, workers=workers)
    return len(written), sum(written)
