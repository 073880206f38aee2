"""The "jpeg75" source: CIFAR-10 kept as JPEG bytes in one npz file, decoded once and cached.

The file (see ``shared/data/README.md``) holds ``train_jpeg``/``train_offsets``/``y_train``,
``test_jpeg``/``test_offsets``/``y_test`` and ``class_names``. Decoding all 60,000 images with
Pillow takes 10–20 s on two cores, so the decoded uint8 arrays are cached (uncompressed npz, written
to a temporary file and moved into place with ``os.replace`` so that a crash never leaves a
half-written cache behind).

Integrity policy:

- the known file (``cifar10_jpeg75.npz``) must have the known sha256; a mismatch is a DataError
  naming the file and both hashes (a truncated download or an edited copy);
- any other npz of the same format (a user's own JPEG export) cannot have a known hash, so its
  *structure* is verified instead: the keys, dtypes, offsets that are monotone and end at the byte
  count, labels in 0..9, and every image must decode to 32x32 RGB. Its cache entry is keyed by its
  own sha256, so editing the file invalidates the cache.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark import DataError
from benchmark.hardware import cores, default_cache_dir

KNOWN_NAME = "cifar10_jpeg75.npz"
KNOWN_SHA256 = "3b3e60277fe11bcaf2c6b325ea2987c050135755a01121f2dea28b7d3da97a9e"
# sha256 of x_train.tobytes() / x_test.tobytes() when decoded with Pillow's bundled libjpeg-turbo
# (shared/data/README.md); checked by the tests, not at run time, since another libjpeg may differ
# by a grey level here and there.
DECODED_TRAIN_SHA256 = "bf3aabd52be912dae02a0435296c4dab5289524b57f55cd162dc4796935a611b"
DECODED_TEST_SHA256 = "5a6aa8185204d80b65d3dfb540696dadd5f10d185ded226a96665d3e0fc6259f"

REQUIRED_KEYS = ("train_jpeg", "train_offsets", "y_train", "test_jpeg", "test_offsets", "y_test",
                 "class_names")
# Bump when the decoded layout or the decoder changes, so old cache files are not reused.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class DecodedCifar:
    x_train: np.ndarray  # uint8 (N, 32, 32, 3)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    cache_file: Path


def verify_npz(path: Path) -> str:
    """Return the file's sha256 after checking it (known hash or structure, see module doc)."""
    if not path.is_file():
        raise DataError(f"{path}: no such npz file")
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if path.name == KNOWN_NAME and digest != KNOWN_SHA256:
        raise DataError(f"{path}: sha256 {digest} does not match the known {KNOWN_SHA256} "
                        "(truncated or modified copy; fetch it again)")
    return digest


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in REQUIRED_KEYS if key not in archive.files]
            if missing:
                raise DataError(f"{path}: not a CIFAR JPEG npz, missing arrays {missing} "
                                f"(expected {list(REQUIRED_KEYS)})")
            return {key: archive[key] for key in REQUIRED_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read npz ({type(exc).__name__}: {exc})") from None


def _check_structure(path: Path, arrays: dict[str, np.ndarray]) -> None:
    for split in ("train", "test"):
        jpeg, offsets, labels = (arrays[f"{split}_jpeg"], arrays[f"{split}_offsets"],
                                 arrays[f"y_{split}"])
        problems = []
        if jpeg.dtype != np.uint8 or jpeg.ndim != 1:
            problems.append(f"{split}_jpeg must be 1-d uint8")
        if offsets.ndim != 1 or offsets.size != labels.size + 1 or offsets.size < 2:
            problems.append(f"{split}_offsets must have len(y_{split}) + 1 entries")
        elif offsets[0] != 0 or offsets[-1] != jpeg.size or np.any(np.diff(offsets) <= 0):
            problems.append(f"{split}_offsets must rise from 0 to len({split}_jpeg)")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            problems.append(f"y_{split} must lie in 0..9")
        if problems:
            raise DataError(f"{path}: malformed CIFAR JPEG npz: {'; '.join(problems)}")
    if arrays["class_names"].shape != (10,):
        raise DataError(f"{path}: class_names must hold 10 names")


def _decode_chunk(args: tuple[str, bytes, np.ndarray]) -> np.ndarray:
    """Decode a run of JPEGs (a module-level function so that worker processes can pickle it)."""
    from PIL import Image

    name, blob, offsets = args
    out = np.empty((offsets.size - 1, 32, 32, 3), dtype=np.uint8)
    for i in range(offsets.size - 1):
        try:
            with Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]])) as image:
                pixels = np.asarray(image.convert("RGB"))
        except Exception as exc:  # PIL raises several types for broken data
            raise DataError(f"{name}: image cannot be decoded ({type(exc).__name__}: {exc})") from None
        if pixels.shape != (32, 32, 3):
            raise DataError(f"{name}: image decodes to shape {pixels.shape}, expected (32, 32, 3)")
        out[i] = pixels
    return out


def decode_jpegs(jpeg: np.ndarray, offsets: np.ndarray, label: str, workers: int | None = None,
                 chunk_size: int = 2500) -> np.ndarray:
    """Decode concatenated JPEGs into uint8 NHWC, on all available cores (processes, since the
    per-image Python overhead of Pillow holds the GIL)."""
    count = offsets.size - 1
    jobs = []
    for start in range(0, count, chunk_size):
        stop = min(start + chunk_size, count)
        lo, hi = int(offsets[start]), int(offsets[stop])
        jobs.append((f"{label}[{start}:{stop}]", jpeg[lo:hi].tobytes(), offsets[start:stop + 1] - lo))
    workers = workers or cores()
    if workers <= 1 or len(jobs) == 1:
        parts = [_decode_chunk(job) for job in jobs]
    else:
        # fork: the workers only need Pillow and numpy, and fork avoids re-importing torch.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            parts = list(pool.map(_decode_chunk, jobs))
    if not parts:
        return np.empty((0, 32, 32, 3), dtype=np.uint8)
    return np.concatenate(parts)


def _atomic_save(target: Path, **arrays: np.ndarray) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache is fine to share read-only
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(cache_file: Path) -> DecodedCifar | None:
    try:
        with np.load(cache_file, allow_pickle=False) as archive:
            decoded = DecodedCifar(archive["x_train"], archive["y_train"].astype(np.int64),
                                   archive["x_test"], archive["y_test"].astype(np.int64),
                                   tuple(str(n) for n in archive["class_names"]), cache_file)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # unreadable: decode again and overwrite
    if decoded.x_train.shape[1:] != (32, 32, 3) or len(decoded.x_train) != len(decoded.y_train):
        return None
    return decoded


def load_jpeg_npz(path: str | Path, cache_dir: str | Path | None = None,
                  workers: int | None = None) -> DecodedCifar:
    """Verify the npz, then return its decoded arrays from the cache, decoding on a miss."""
    path = Path(path).expanduser().resolve()
    digest = verify_npz(path)
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_file = cache_dir / f"{path.stem}-{digest[:16]}-decoded-v{CACHE_FORMAT}.npz"
    if cache_file.is_file() and (cached := _read_cache(cache_file)) is not None:
        return cached
    arrays = _load_arrays(path)
    _check_structure(path, arrays)
    x_train = decode_jpegs(arrays["train_jpeg"], arrays["train_offsets"], f"{path} train", workers)
    x_test = decode_jpegs(arrays["test_jpeg"], arrays["test_offsets"], f"{path} test", workers)
    class_names = np.asarray([str(n) for n in arrays["class_names"]])
    _atomic_save(cache_file, x_train=x_train, y_train=arrays["y_train"], x_test=x_test,
                 y_test=arrays["y_test"], class_names=class_names)
    return DecodedCifar(x_train, arrays["y_train"].astype(np.int64), x_test,
                        arrays["y_test"].astype(np.int64), tuple(class_names.tolist()), cache_file)
