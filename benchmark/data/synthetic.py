"""The "synthetic" source: CIFAR-shaped, deterministic per seed, and learnable.

Each class has a template (a base colour plus a sinusoidal stripe pattern with its own orientation
and frequency); an image is its class template, randomly shifted by up to 4 px (so the paper's
crop augmentation keeps it recognisable), plus per-pixel noise. A small network separates the
classes within a few dozen SGD steps, which lets end-to-end tests show the loss going down without
the real dataset, and lets benchmarks measure loaders without any download.
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)


def class_templates(seed: int) -> np.ndarray:
    """float32 (10, 32, 32, 3) templates in 0..255, one per class."""
    rng = np.random.default_rng([seed, 0x5EED])
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    templates = np.empty((NUM_CLASSES, *IMAGE_SHAPE), dtype=np.float32)
    for label in range(NUM_CLASSES):
        colour = rng.uniform(40, 215, size=3)
        angle = np.pi * label / NUM_CLASSES + rng.uniform(0, np.pi / NUM_CLASSES)
        frequency = rng.uniform(0.25, 0.9)
        stripes = np.sin(frequency * (np.cos(angle) * xx + np.sin(angle) * yy))
        contrast = rng.uniform(30, 60, size=3)
        templates[label] = colour + stripes[..., None] * contrast
    return templates


def make_synthetic(count: int, seed: int, stream: int, noise: float = 24.0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (uint8 NHWC) and balanced int64 labels; ``stream`` separates train from
    test draws of the same seed."""
    templates = class_templates(seed)
    rng = np.random.default_rng([seed, stream])
    labels = rng.permutation(np.arange(count) % NUM_CLASSES).astype(np.int64)
    shifts = rng.integers(-4, 5, size=(count, 2))
    images = np.empty((count, *IMAGE_SHAPE), dtype=np.uint8)
    for i in range(count):
        shifted = np.roll(templates[labels[i]], shift=tuple(shifts[i]), axis=(0, 1))
        pixels = shifted + rng.normal(0.0, noise, size=IMAGE_SHAPE)
        images[i] = np.clip(pixels, 0, 255).astype(np.uint8)
    return images, labels
