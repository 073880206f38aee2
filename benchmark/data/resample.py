"""Pillow's antialiased bilinear resize, in numba, for any window of the resized image.

The torch loader resizes with ``PIL.Image.resize(size, BILINEAR)`` (torchvision's ``Resize`` and
our ``RandomShorterSide``): a separable triangle filter whose support grows with the shrink factor
(antialiasing), with weights in 22-bit fixed point, a horizontal pass rounded to uint8, then a
vertical pass. This is the same arithmetic (Pillow's ``precompute_coeffs`` and
``normalize_coeffs_8bpc``), so the "ffcv" loader's pixels are the torch loader's, and it computes
only the requested window: a training crop costs 224x224 outputs, not the whole resized image. OpenCV's INTER_AREA (FFCV's own resize)
is a different filter and, on these shrink factors, slower.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True)
def bilinear_taps(in_size: int, out_size: int, first: int, count: int):
    """Source start, tap count and weights (each row sums to 1) of outputs ``first`` ..
    ``first + count - 1`` of a resize from ``in_size`` to ``out_size`` pixels (Pillow's
    ``precompute_coeffs`` for the bilinear filter)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)  # shrinking widens the triangle: antialiasing
    support = filter_scale  # the bilinear filter's support is 1
    starts = np.empty(count, np.int64)
    counts = np.empty(count, np.int64)
    weights = np.zeros((count, int(np.ceil(support)) * 2 + 1), np.float64)
    for i in range(count):
        centre = (first + i + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), in_size)
        total = 0.0
        for x in range(high - low):
            weight = max(1.0 - abs((x + low - centre + 0.5) * (1.0 / filter_scale)), 0.0)
            weights[i, x] = weight
            total += weight
        if total > 0:
            weights[i] /= total
        starts[i], counts[i] = low, high - low
    return starts, counts, weights


PRECISION_BITS = 22  # Pillow's fixed point for 8-bit images: 32 - 8 - 2


@numba.njit(nogil=True)
def _fixed(weights: np.ndarray) -> np.ndarray:
    """The weights in Pillow's fixed point (they are never negative for the bilinear filter)."""
    return (weights * (1 << PRECISION_BITS) + 0.5).astype(np.int64)


@numba.njit(nogil=True)
def _clip8(total: int) -> np.uint8:
    return np.uint8(min(max(total >> PRECISION_BITS, 0), 255))


@numba.njit(nogil=True, fastmath=True)
def resize_window(image: np.ndarray, out_height: int, out_width: int, top: int, left: int, out: np.ndarray,
                  flip: bool = False) -> None:
    """``out`` (h, w, 3) = the window at (top, left) of ``image`` (H, W, 3) uint8 resized to
    (out_height, out_width) with Pillow's arithmetic: fixed-point weights, a horizontal pass
    rounded to uint8, then a vertical pass; mirrored left-right if ``flip`` (at no cost)."""
    height, width = out.shape[0], out.shape[1]
    col_starts, col_counts, col_weights = bilinear_taps(image.shape[1], out_width, left, width)
    row_starts, row_counts, row_weights = bilinear_taps(image.shape[0], out_height, top, height)
    col_fixed, row_fixed = _fixed(col_weights), _fixed(row_weights)
    half = np.int64(1 << (PRECISION_BITS - 1))
    first_row = row_starts[0]
    last_row = 0
    for i in range(height):
        last_row = max(last_row, row_starts[i] + row_counts[i])
    rows = np.empty((last_row - first_row, width * 3), np.int32)  # the horizontal pass, as uint8 values
    for r in range(last_row - first_row):
        source = image[first_row + r]
        for o in range(width):
            red = green = blue = half
            for k in range(col_counts[o]):
                weight = col_fixed[o, k]
                pixel = source[col_starts[o] + k]
                red += pixel[0] * weight
                green += pixel[1] * weight
                blue += pixel[2] * weight
            column = 3 * (width - 1 - o if flip else o)
            rows[r, column] = _clip8(red)
            rows[r, column + 1] = _clip8(green)
            rows[r, column + 2] = _clip8(blue)
    flat = out.reshape(height, width * 3)
    total = np.empty(width * 3, np.int64)
    for o in range(height):
        total[:] = half
        for k in range(row_counts[o]):
            weight = row_fixed[o, k]
            line = rows[row_starts[o] - first_row + k]
            for j in range(width * 3):  # contiguous: vectorised
                total[j] += line[j] * weight
        for j in range(width * 3):
            flat[o, j] = _clip8(total[j])
