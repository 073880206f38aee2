"""The "ffcv" loader for ImageNet: the paper's pipeline (Section 3.4) as FFCV operations, over the
betons of :mod:`benchmark.data.imagenet_beton`, with the torch loader's semantics
(:mod:`benchmark.data.imagenet`), pixel for pixel to within rounding:

- training, :class:`ScaleAugmentDecoder`: the shorter side S drawn uniformly from [256, 480], a
  random 224x224 crop of the image resized to S, a horizontal flip with p = 1/2. It decodes the
  JPEG and computes only the crop's window of the resized image;
- evaluation, :class:`ResizedCropsDecoder`: the shorter side resized to 256, then the centre 224
  crop, or the paper's 10 crops (the 4 corners and the centre, and the same of the flipped image,
  in torchvision's ``TenCrop`` order) as (10, 224, 224, 3) per image;
- both, :class:`NormaliseLighting`: x / 255, the AlexNet PCA colour shift (training), the
  per-channel mean and std, into a new float32 array: on numba's threads on a CPU, on the device
  (after uint8 crossed the bus) otherwise.

Sizes and crop offsets are torchvision's (``Resize``, ``CenterCrop``, ``FiveCrop``), the resize is
Pillow's antialiased bilinear (:mod:`benchmark.data.resample`). Random draws are a stateless hash
of (seed, the batch's sample indices, the sample index), as in
:class:`benchmark.data.ffcv_loader.SeededCropFlip`, so an epoch is deterministic for (seed, index)
and its batches (hence draws) change with the per-epoch permutation.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np
import torch
from ffcv.fields.rgb_image import IMAGE_MODES, SimpleRGBImageDecoder
from ffcv.libffcv import imdecode
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from ffcv.transforms import ToDevice, ToTensor

from benchmark.data.ffcv_loader import FfcvEpochLoader, _splitmix64, batch_key
from benchmark.data.imagenet import CROP, EVAL_RESIZE, LIGHTING_STD, MEAN, PCA_EIGVAL, PCA_EIGVEC, STD, TRAIN_SCALE
from benchmark.data.imagenet_beton import check_imagenet_betons
from benchmark.data.resample import resize_window

CROP_STREAM = np.uint64(0x5CA1E)  # separate hash streams for the crops and the colour shifts
LIGHTING_STREAM = np.uint64(0xC0102)


def stream_key(seed: int, stream: np.uint64) -> np.uint64:
    """The hash key of one stream (crops or colour shifts) of a loader's seed."""
    return np.uint64(_splitmix64(np.uint64(seed) ^ stream))


@numba.njit
def image_hashes(seed: np.uint64, indices: np.ndarray) -> np.ndarray:
    """One 64-bit hash per image of a batch, from the seed, the batch and the image's index."""
    key = batch_key(seed, indices)
    hashes = np.empty(len(indices), np.uint64)
    for i in range(len(indices)):
        hashes[i] = _splitmix64(key ^ np.uint64(indices[i]))
    return hashes


@numba.njit
def resized_size(height: int, width: int, size: int):
    """torchvision's ``Resize(size)`` for a PIL image: the shorter side becomes ``size``, the longer
    ``int(size * longer / shorter)``. Returns (height, width)."""
    if width <= height:
        return np.int64(size * height / width), np.int64(size)
    return np.int64(size), np.int64(size * width / height)


@numba.njit
def scale_crop(height: int, width: int, z: np.uint64, low: int, high: int, size: int):
    """(S, top, left, flip) of one training view from the hash ``z``: S uniform in [low, high], the
    image resized to shorter side S (:func:`resized_size`), a ``size`` crop at (top, left) uniform
    inside the resized image, and the flip (p = 1/2)."""
    scale = low + np.int64(z % np.uint64(high - low + 1))
    new_height, new_width = resized_size(height, width, scale)
    z2 = _splitmix64(z)
    top = np.int64((z2 & np.uint64(0xFFFFFFFF)) % np.uint64(new_height - size + 1))
    left = np.int64((z2 >> np.uint64(32)) % np.uint64(new_width - size + 1))
    flip = ((z >> np.uint64(40)) & np.uint64(1)) == np.uint64(1)
    return scale, top, left, flip


@numba.njit
def _centre(excess: int) -> int:
    """torchvision's ``int(round(excess / 2.0))``: Python rounds halves to the even neighbour."""
    half, odd = excess // 2, excess % 2
    return half + (half % 2 if odd else 0)


@numba.njit
def five_crop_offsets(height: int, width: int, size: int) -> np.ndarray:
    """(top, left) of torchvision's ``FiveCrop``: the four corners, then the centre."""
    offsets = np.empty((5, 2), np.int64)
    offsets[0, 0], offsets[0, 1] = 0, 0
    offsets[1, 0], offsets[1, 1] = 0, width - size
    offsets[2, 0], offsets[2, 1] = height - size, 0
    offsets[3, 0], offsets[3, 1] = height - size, width - size
    offsets[4, 0], offsets[4, 1] = _centre(height - size), _centre(width - size)
    return offsets


@numba.njit
def lighting_alphas(seed: np.uint64, indices: np.ndarray) -> np.ndarray:
    """Standard normal (n, 3) draws per image for the PCA colour shift (Box-Muller on the hash)."""
    hashes = image_hashes(seed, indices)
    alphas = np.empty((len(indices), 3), np.float32)
    for i in range(len(indices)):
        z = hashes[i]
        for k in range(3):
            u1 = (np.float64(_splitmix64(z ^ np.uint64(2 * k + 1)) >> np.uint64(11)) + 1.0) * 2.0 ** -53
            u2 = np.float64(_splitmix64(z ^ np.uint64(2 * k + 2)) >> np.uint64(11)) * 2.0 ** -53
            alphas[i, k] = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return alphas


# FFCV compiles each operation's code anew for every Loader; the per-image work lives in these
# module-level functions instead, compiled once per process (each Loader recompiles only its loop).
_imdecode = numba.njit(nogil=True)(imdecode)
JPEG_MODE = IMAGE_MODES["jpg"]


@numba.njit(nogil=True)
def decode_image(data: np.ndarray, height: int, width: int, mode: int) -> np.ndarray:
    """One stored image as (height, width, 3) uint8: decoded from JPEG, or the raw pixels."""
    if mode != JPEG_MODE:
        return data.reshape(height, width, 3)
    image = np.empty(height * width * 3, np.uint8)  # per image: memory bounded by the batch, not the largest image
    _imdecode(data, image, np.uint32(height), np.uint32(width), np.uint32(height), np.uint32(width),
              0, 0, 1, 1, False, False)
    return image.reshape(height, width, 3)


@numba.njit(nogil=True)
def train_view(data, height, width, mode, z, low, high, size, out) -> None:
    """Decode, then write the :func:`scale_crop` window of the image resized to shorter side S
    into ``out`` (only that window is computed), flipped if drawn."""
    image = decode_image(data, height, width, mode)
    scale, top, left, flip = scale_crop(height, width, z, low, high, size)
    new_height, new_width = resized_size(height, width, scale)
    resize_window(image, new_height, new_width, top, left, out, flip)


@numba.njit(nogil=True)
def _copy_crop(image: np.ndarray, top: int, left: int, flip: bool, out: np.ndarray) -> None:
    """``out`` = the (size, size) crop of ``image`` at (top, left), mirrored left-right if ``flip``."""
    size = out.shape[1]
    for row in range(size):
        for col in range(size):
            source = left + (size - 1 - col if flip else col)
            for c in range(3):
                out[row, col, c] = image[top + row, source, c]


@numba.njit(nogil=True)
def centre_view(data, height, width, mode, resize, out) -> None:
    """The single-crop evaluation view: the centre (size, size) crop of the image resized to shorter
    side ``resize`` (only that window is computed)."""
    image = decode_image(data, height, width, mode)
    new_height, new_width = resized_size(height, width, resize)
    offsets = five_crop_offsets(new_height, new_width, out.shape[0])
    resize_window(image, new_height, new_width, offsets[4, 0], offsets[4, 1], out)


@numba.njit(nogil=True)
def ten_views(data, height, width, mode, resize, out) -> None:
    """Section 3.4's 10-crop testing views, ``out`` (10, size, size, 3) in ``TenCrop``'s order: the
    four corners and the centre of the image resized to shorter side ``resize``, then the same five
    of its mirror image."""
    image = decode_image(data, height, width, mode)
    new_height, new_width = resized_size(height, width, resize)
    resized = np.empty((new_height, new_width, 3), np.uint8)
    resize_window(image, new_height, new_width, 0, 0, resized)
    size = out.shape[1]
    offsets = five_crop_offsets(new_height, new_width, size)
    for v in range(5):
        _copy_crop(resized, offsets[v, 0], offsets[v, 1], False, out[v])
        # that crop of the mirror image is the mirror-image crop (left -> width - size - left), flipped
        _copy_crop(resized, offsets[v, 0], new_width - size - offsets[v, 1], True, out[5 + v])


def _uint8_state(previous_state: State, shape: tuple[int, ...]) -> tuple[State, AllocationQuery]:
    return (replace(previous_state, jit_mode=True, shape=shape, dtype=np.dtype("u1")),
            AllocationQuery(shape, np.dtype("u1")))


class ScaleAugmentDecoder(SimpleRGBImageDecoder):
    """Section 3.4's training view: shorter side S in [low, high], a random ``size`` crop, a flip."""

    def __init__(self, seed: int, scale: tuple[int, int] = TRAIN_SCALE, size: int = CROP) -> None:
        super().__init__()
        self.seed, self.scale, self.size = seed, scale, size

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        return _uint8_state(previous_state, (self.size, self.size, 3))

    def generate_code(self):
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        seed = stream_key(self.seed, CROP_STREAM)
        (low, high), size = self.scale, self.size

        def decode(batch_indices, destination, metadata, storage_state):
            hashes = image_hashes(seed, batch_indices)
            for i in my_range(len(batch_indices)):
                field = metadata[batch_indices[i]]
                train_view(mem_read(field["data_ptr"], storage_state), np.int64(field["height"]),
                           np.int64(field["width"]), field["mode"], hashes[i], low, high, size, destination[i])
            return destination[:len(batch_indices)]

        decode.is_parallel = True
        return decode


class ResizedCropsDecoder(SimpleRGBImageDecoder):
    """The evaluation views: the shorter side resized to ``resize``, then the centre ``size`` crop,
    or (``ten_crop``) the ten crops of Section 3.4 as (10, size, size, 3)."""

    def __init__(self, ten_crop: bool, resize: int = EVAL_RESIZE, size: int = CROP) -> None:
        super().__init__()
        self.ten_crop, self.resize, self.size = ten_crop, resize, size

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery]:
        return _uint8_state(previous_state, ((10,) if self.ten_crop else ()) + (self.size, self.size, 3))

    def generate_code(self):
        mem_read = self.memory_read
        my_range = Compiler.get_iterator()
        resize = self.resize
        views = ten_views if self.ten_crop else centre_view

        def decode(batch_indices, destination, metadata, storage_state):
            for i in my_range(len(batch_indices)):
                field = metadata[batch_indices[i]]
                views(mem_read(field["data_ptr"], storage_state), np.int64(field["height"]),
                      np.int64(field["width"]), field["mode"], resize, destination[i])
            return destination[:len(batch_indices)]

        decode.is_parallel = True
        return decode


_EIGVAL, _EIGVEC = np.array(PCA_EIGVAL, np.float32), np.array(PCA_EIGVEC, np.float32)
_MEAN, _STD = np.array(MEAN, np.float32), np.array(STD, np.float32)


@numba.njit
def channel_biases(seed: np.uint64, indices: np.ndarray, lighting_std: float) -> np.ndarray:
    """(n, 3) float32 per image and channel: ``(shift - mean) / std``, the shift being the AlexNet PCA
    colour shift ``eigvec @ (alpha * eigval)`` with alpha ~ N(0, lighting_std^2) (0: no shift)."""
    biases = np.empty((len(indices), 3), np.float32)
    alphas = lighting_alphas(seed, indices) if lighting_std > 0 else np.zeros((len(indices), 3), np.float32)
    for i in range(len(indices)):
        for c in range(3):
            shift = 0.0
            for k in range(3):
                shift += _EIGVEC[c, k] * alphas[i, k] * lighting_std * _EIGVAL[k]
            biases[i, c] = (shift - _MEAN[c]) / _STD[c]
    return biases


@numba.njit(nogil=True, fastmath=True)
def normalise_into(images: np.ndarray, scale: np.ndarray, biases: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = images[i] * scale + biases[i]`` per channel (the last axis). One thread: about
    0.1 ms an image, a small fraction of the decode's (a parallel region here cost more CPU in
    thread hand-offs than it saved)."""
    count = images.shape[0]
    source, target = images.reshape(count, -1, 3), out.reshape(count, -1, 3)
    for i in range(count):
        for p in range(source.shape[1]):
            target[i, p, 0] = source[i, p, 0] * scale[0] + biases[i, 0]
            target[i, p, 1] = source[i, p, 1] * scale[1] + biases[i, 1]
            target[i, p, 2] = source[i, p, 2] * scale[2] + biases[i, 2]


class ReusedArrays:
    """float32 batch arrays handed out again once nothing outside this pool refers to them (the
    batch's tensors are gone): a batch a caller keeps is never overwritten, and a training loop,
    which drops each batch, reuses a handful of arrays instead of allocating, and page-faulting
    in, 150 MB per batch (that cost the CPU as much as decoding the JPEGs). Used from FFCV's loader
    thread only."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        for index in range(len(self.arrays)):
            if sys.getrefcount(self.arrays[index]) == 2:  # only this list and getrefcount's argument: free
                if self.arrays[index].shape == shape:
                    return self.arrays[index]
                del self.arrays[index]  # free, of another shape (an epoch's last batch): let it go
                break
        self.arrays.append(np.empty(shape, np.float32))
        return self.arrays[-1]


class NormaliseLighting(Operation):
    """uint8 (..., H, W, 3) -> a new float32 (..., H, W, 3) array: ``x / 255``, plus the PCA colour
    shift (training), minus the mean, over the std (:func:`channel_biases`): the torch path's
    ToTensor, Lighting and Normalize in one pass (the channels move first in the loader's
    ``finish``, a view). Its output is never FFCV's reused buffer, so a batch stays valid as long as
    it is held. Right after the decoder (CPU) it runs :func:`normalise_into` on numba's threads into
    an array of :class:`ReusedArrays`; after ``ToDevice`` it is torch code on the device (a new
    tensor), so that uint8 crosses the bus."""

    def __init__(self, seed: int, lighting_std: float = 0.0) -> None:
        super().__init__()
        self.seed = stream_key(seed, LIGHTING_STREAM)
        self.lighting_std = lighting_std
        self.on_host = True
        self.outputs = ReusedArrays()

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, None]:
        self.on_host = previous_state.jit_mode  # numpy on the CPU, straight from the decoder
        dtype = np.dtype("f4") if self.on_host else torch.float32
        return replace(previous_state, jit_mode=False, dtype=dtype), None

    def generate_code(self):
        seed, lighting_std, outputs = self.seed, self.lighting_std, self.outputs
        scale = (1.0 / (255.0 * _STD)).astype(np.float32)
        if self.on_host:
            def normalise(images: np.ndarray, _destination, indices: np.ndarray) -> np.ndarray:
                out = outputs.empty(images.shape)
                normalise_into(images, scale, channel_biases(seed, indices, lighting_std), out)
                return out
        else:
            def normalise(images: torch.Tensor, _destination, indices: np.ndarray) -> torch.Tensor:
                biases = torch.from_numpy(channel_biases(seed, indices, lighting_std))
                broadcast = (images.shape[0],) + (1,) * (images.dim() - 2) + (3,)
                return (images.to(torch.float32).mul_(torch.from_numpy(scale).to(images.device))
                        .add_(biases.to(images.device, non_blocking=True).view(broadcast)))

        normalise.with_indices = True
        return normalise


class FfcvImagenetLoader(FfcvEpochLoader):
    """The ImageNet "ffcv" loader: ``augment`` (training) or the ``ten_crop``/centre evaluation
    views; ``distributed`` shards every epoch by rank (training padded to equal shares)."""

    def __init__(self, beton: Path, batch_size: int, device: torch.device | str = "cpu", seed: int = 0,
                 augment: bool = False, ten_crop: bool = False, shuffle: bool = False, drop_last: bool = False,
                 num_workers: int = 2, lighting_std: float = LIGHTING_STD, distributed: bool = False) -> None:
        device = torch.device(device)
        decoder = ScaleAugmentDecoder(seed) if augment else ResizedCropsDecoder(ten_crop)
        normalise = NormaliseLighting(seed, lighting_std if augment else 0.0)
        if device.type == "cpu":
            image_ops = [decoder, normalise, ToTensor()]
        else:  # uint8 over the bus, normalised on the device
            image_ops = [decoder, ToTensor(), ToDevice(device, non_blocking=True), normalise]
        super().__init__(beton, image_ops, batch_size, device, seed, shuffle, drop_last, num_workers, distributed)

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        return images.movedim(-1, -3)  # (..., 3, H, W), channels-last in memory; NormaliseLighting wrote it new


def build_ffcv_imagenet_loaders(root: str | Path, batch_size: int = 256, device: torch.device | str = "cpu",
                                seed: int = 0, eval_batch_size: int = 100, num_workers: int = 2,
                                ten_crop: bool = False, shuffle: bool = True, lighting_std: float = LIGHTING_STD,
                                distributed: bool = False) -> tuple[FfcvImagenetLoader, FfcvImagenetLoader]:
    """(train_loader, eval_loader) over ``root/ffcv``'s betons, checked against the folder first.
    ``num_workers`` is FFCV's threads (at least 1). ``distributed=True`` (under an initialised
    torch.distributed process group) gives each rank its share of every epoch."""
    train_beton, val_beton = check_imagenet_betons(root)
    common = dict(device=device, seed=seed, num_workers=num_workers, distributed=distributed)
    return (FfcvImagenetLoader(train_beton, batch_size, augment=True, shuffle=shuffle, drop_last=True,
                               lighting_std=lighting_std, **common),
            FfcvImagenetLoader(val_beton, eval_batch_size, ten_crop=ten_crop, shuffle=False, drop_last=False, **common))
