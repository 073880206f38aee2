"""CIFAR-10 sources, chosen by name, all yielding the same arrays (uint8 NHWC images, int64 labels).

Sources: "torchvision" (the official python batches, read or downloaded by
``torchvision.datasets.CIFAR10``), "jpeg75" (the JPEG npz of ``shared/data/README.md``, lossy:
results on it must say so), "synthetic" (learnable, no download) and "auto" (see
:func:`resolve_auto`).

Splits (Section 4.2 of the paper): "train50k" trains on the official 50k and evaluates on the 10k
test set; "train45k" is the paper's 45k/5k train/validation split of the official training set
(used there to choose the 64k-iteration schedule), evaluated on the 5k validation images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmark import DataError
from benchmark.data import jpeg_npz, synthetic
from benchmark.hardware import default_cache_dir

SOURCES = ("auto", "torchvision", "jpeg75", "synthetic")
SPLITS = ("train50k", "train45k")
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ENV_VAR = "RESNET_BENCHMARK_CIFAR10"
BATCHES_DIR = "cifar-10-batches-py"
# Where the JPEG npz lies on development and CI machines: beside the project's checkout.
SHARED_NPZ = Path("..") / "shared" / "data" / jpeg_npz.KNOWN_NAME
REPO_ROOT = Path(__file__).resolve().parents[2]
VAL_FRACTION = 0.1  # 5k of 50k (Section 4.2)
HOW_TO_PROVIDE = (f"set {ENV_VAR}=<folder holding {BATCHES_DIR}, or the {jpeg_npz.KNOWN_NAME} file>, "
                  "pass --set data.source=synthetic for a quick look, or run "
                  "`python -m benchmark data prepare --source torchvision` where there is internet")


@dataclass(frozen=True, eq=False)  # eq=False: element-wise array comparison has no truth value
class CifarData:
    """CIFAR-10 (or a synthetic stand-in) in memory. Arrays are read-only."""

    x_train: np.ndarray  # uint8 (N, 32, 32, 3)
    y_train: np.ndarray  # int64 (N,)
    x_eval: np.ndarray   # uint8 (M, 32, 32, 3)
    y_eval: np.ndarray   # int64 (M,)
    eval_split: str      # "test" (train50k) or "val" (train45k)
    source: str          # resolved: "torchvision" | "jpeg75" | "synthetic"
    split: str           # "train50k" | "train45k"
    class_names: tuple[str, ...] = CLASS_NAMES
    location: str = field(default="", compare=False)  # where it came from, for provenance

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, train: int | None, eval: int | None) -> "CifarData":
        """The suite's `train_subset` / `eval_subset`: a fixed (seed 0) random subset of each set,
        sorted, the same for every seed and every trial (the JPEG file is grouped by class, so "the
        first N" would be one class only); the whole set where the size is None or not smaller."""
        changes: dict[str, np.ndarray] = {}
        for prefix, size in (("train", train), ("eval", eval)):
            x, y = getattr(self, f"x_{prefix}"), getattr(self, f"y_{prefix}")
            if size is not None and size < len(y):
                keep = np.sort(np.random.default_rng(0).permutation(len(y))[:size])
                changes[f"x_{prefix}"], changes[f"y_{prefix}"] = x[keep], y[keep]
        return replace(self, **changes) if changes else self


def default_root() -> Path:
    """The data root for the official batches: ``~/.cache/resnet-benchmark/cifar10``."""
    return default_cache_dir() / "cifar10"


def _batches_folder(folder: Path) -> Path | None:
    """The folder to hand torchvision (the parent of cifar-10-batches-py), if it holds the batches."""
    if (folder / BATCHES_DIR / "batches.meta").is_file():
        return folder
    if folder.name == BATCHES_DIR and (folder / "batches.meta").is_file():
        return folder.parent
    return None


def read_torchvision(root: Path, download: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Official train/test arrays through ``torchvision.datasets.CIFAR10`` (which checks the md5
    of every batch file)."""
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(root), train=True, download=download)
        test = CIFAR10(str(root), train=False, download=False)
    except (RuntimeError, OSError) as exc:  # not found / corrupted / no network
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{root}: no usable {BATCHES_DIR} ({reason})") from None
    return (np.ascontiguousarray(train.data), np.asarray(train.targets, dtype=np.int64),
            np.ascontiguousarray(test.data), np.asarray(test.targets, dtype=np.int64))


def _jpeg_candidates(root: Path | None, environ: dict[str, str], cwd: Path, repo_root: Path) -> list[Path]:
    if root is not None:  # an explicit place is the only place: a typo must not fall back silently
        return [root if root.suffix == ".npz" else root / jpeg_npz.KNOWN_NAME]
    candidates = []
    env = environ.get(ENV_VAR)
    if env and Path(env).suffix == ".npz":
        candidates.append(Path(env))
    candidates += [cwd / SHARED_NPZ, repo_root / SHARED_NPZ]
    return candidates


def resolve_auto(root: str | Path | None = None, *, environ: dict[str, str] | None = None,
                 cwd: Path | None = None, repo_root: Path = REPO_ROOT,
                 download: bool = True) -> tuple[str, Path]:
    """Pick the source for "auto"; returns (source name, path). Looks, in order, at:

    1. ``root`` if given (a folder with ``cifar-10-batches-py``, or an npz file), then the
       environment variable ``RESNET_BENCHMARK_CIFAR10`` (same forms; if it is set but names
       nothing usable, that is an error rather than a silent fallback);
    2. the official batches in the default data root ``~/.cache/resnet-benchmark/cifar10``;
    3. the JPEG npz at ``../shared/data/cifar10_jpeg75.npz`` relative to the current directory,
       then relative to the repository (where it lies on development and CI machines);
    4. a torchvision download into ``root`` (or the default data root), if ``download``.

    If nothing works, one DataError lists every place it looked and how to provide the data.
    """
    environ = dict(os.environ) if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    looked: list[str] = []
    explicit = [Path(root).expanduser()] if root is not None else []
    if root is not None and explicit[0].suffix == ".npz" and not explicit[0].is_file():
        raise DataError(f"{explicit[0]}: no such npz file")  # a typo must not fall back silently
    if env := environ.get(ENV_VAR):
        env_path = Path(env).expanduser()
        if not ((env_path.is_file() and env_path.suffix == ".npz") or _batches_folder(env_path)):
            raise DataError(f"{ENV_VAR}={env} is neither a folder holding {BATCHES_DIR} nor an npz file")
        explicit.append(env_path)
    for path in explicit:
        if path.is_file() and path.suffix == ".npz":
            return "jpeg75", path
        if folder := _batches_folder(path):
            return "torchvision", folder
        looked.append(f"{path} ({BATCHES_DIR} or .npz)")
    data_root = default_root()
    if folder := _batches_folder(data_root):
        return "torchvision", folder
    looked.append(f"{data_root}/{BATCHES_DIR}")
    for candidate in [cwd / SHARED_NPZ, repo_root / SHARED_NPZ]:
        if candidate.is_file():
            return "jpeg75", candidate.resolve()
        looked.append(str(candidate))
    target = Path(root).expanduser() if root is not None else data_root
    if download:
        try:
            read_torchvision(target, download=True)
            return "torchvision", target
        except DataError as exc:
            looked.append(f"torchvision download into {target} failed: {exc}")
    else:
        looked.append("download disabled")
    raise DataError(f"CIFAR-10 not found; looked at: {'; '.join(looked)}. To provide it: {HOW_TO_PROVIDE}")


def _find_npz(root: Path | None, environ: dict[str, str], cwd: Path, repo_root: Path) -> Path:
    candidates = _jpeg_candidates(root, environ, cwd, repo_root)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise DataError(f"the jpeg75 source needs {jpeg_npz.KNOWN_NAME}; looked at: "
                    f"{'; '.join(map(str, candidates))}. Pass root=<path to the npz> or set {ENV_VAR}")


def split_45k(y_train: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's 45k/5k split: a seeded split stratified by class (10% of each class to
    validation), returned as sorted train and val indices."""
    rng = np.random.default_rng([seed, 45_000])
    val = []
    for label in np.unique(y_train):
        members = np.flatnonzero(y_train == label)
        take = int(round(len(members) * VAL_FRACTION))
        val.append(rng.choice(members, size=take, replace=False))
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(y_train)), val_idx)
    return train_idx, val_idx


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def load_cifar10(source: str = "auto", split: str = "train50k", root: str | Path | None = None,
                 seed: int = 0, cache_dir: str | Path | None = None, synthetic_size: int = 2000,
                 download: bool = True) -> CifarData:
    """Load CIFAR-10 from ``source`` ("auto" | "torchvision" | "jpeg75" | "synthetic"); "auto"
    looks in the order documented in :func:`resolve_auto`.

    - ``root``: the data root for "torchvision" (default ``~/.cache/resnet-benchmark/cifar10``),
      the npz file (or a folder holding it) for "jpeg75", the first place "auto" looks.
    - ``seed``: seeds the synthetic images and the 45k/5k split; keep it fixed (the default) to
      hold the validation set constant across trials that differ in their training seed.
    - ``cache_dir``: where "jpeg75" keeps its decoded arrays (default ``~/.cache/resnet-benchmark``).
    - ``synthetic_size``: training images of the synthetic source (plus a fifth as many test images).
    - ``download``: whether "torchvision"/"auto" may download the official batches.
    """
    if source not in SOURCES:
        raise DataError(f"unknown CIFAR-10 source {source!r}; expected one of {list(SOURCES)}")
    if split not in SPLITS:
        raise DataError(f"unknown CIFAR-10 split {split!r}; expected one of {list(SPLITS)}")
    root_path = Path(root).expanduser() if root is not None else None
    if source == "auto":
        source, root_path = resolve_auto(root_path, download=download)
    if source == "synthetic":
        if synthetic_size < 10:
            raise DataError(f"synthetic_size={synthetic_size}: need at least 10 images (one per class)")
        x_train, y_train = synthetic.make_synthetic(synthetic_size, seed, stream=1)
        x_test, y_test = synthetic.make_synthetic(max(10, synthetic_size // 5), seed, stream=2)
        names, location = CLASS_NAMES, f"synthetic(seed={seed}, size={synthetic_size})"
    elif source == "jpeg75":
        npz = _find_npz(root_path, dict(os.environ), Path.cwd(), REPO_ROOT)
        decoded = jpeg_npz.load_jpeg_npz(npz, cache_dir)
        x_train, y_train, x_test, y_test = decoded.x_train, decoded.y_train, decoded.x_test, decoded.y_test
        names, location = decoded.class_names, str(npz)
    else:  # torchvision
        folder = root_path if root_path is not None else default_root()
        folder = _batches_folder(folder) or folder
        x_train, y_train, x_test, y_test = read_torchvision(folder, download=download)
        names, location = CLASS_NAMES, str(folder / BATCHES_DIR)
    if split == "train45k":
        train_idx, val_idx = split_45k(y_train, seed)
        x_train, y_train, x_eval, y_eval = x_train[train_idx], y_train[train_idx], x_train[val_idx], y_train[val_idx]
        eval_split = "val"
    else:
        x_eval, y_eval, eval_split = x_test, y_test, "test"
    arrays = [_readonly(np.ascontiguousarray(a)) for a in (x_train, y_train.astype(np.int64),
                                                           x_eval, y_eval.astype(np.int64))]
    return CifarData(*arrays, eval_split=eval_split, source=source, split=split,
                     class_names=tuple(names), location=location)
