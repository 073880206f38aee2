"""The three CIFAR loaders: one interface, identical pixels without augmentation, the paper's
augmentation (Section 4.2) with it, determinism per (seed, epoch)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from benchmark import DataError
from benchmark.data import build_loaders, load_cifar10, preprocess

BATCH = 50


def _available(name: str) -> bool:
    if name != "ffcv":
        return True
    try:
        import ffcv  # noqa: F401
    except ImportError:
        return False
    return True


LOADER_PARAMS = [pytest.param(name, marks=[pytest.mark.ffcv] if name == "ffcv" else [],
                              id=name) for name in ("device", "torch", "ffcv")]


@pytest.fixture(scope="module")
def data():
    return load_cifar10("synthetic", synthetic_size=400, seed=1)


@pytest.fixture(scope="module")
def beton_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("betons")


def make(data, name, beton_dir, **options):
    if not _available(name):
        pytest.importorskip("ffcv")
    options.setdefault("batch_size", BATCH)
    options.setdefault("eval_batch_size", 64)
    # num_workers=0 keeps the torch loader in-process (fast to start in tests); the worker path is
    # covered by test_torch_loader_with_workers_is_deterministic.
    options.setdefault("num_workers", 0 if name == "torch" else 1)
    return build_loaders(data, name, beton_dir=beton_dir, **options)


def unnormalise(x: torch.Tensor, mean01: torch.Tensor) -> np.ndarray:
    """float32 NCHW back to uint8 NHWC pixels (exact: the loaders compute x/255 - mean/255)."""
    return ((x + mean01) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name", LOADER_PARAMS)
def test_interface_shapes_and_lengths(data, beton_dir, name):
    train, evaluation = make(data, name, beton_dir)
    assert len(train) == 400 // BATCH and train.num_examples == 400
    assert len(evaluation) == math.ceil(80 / 64) and evaluation.num_examples == 80
    batches = list(train.epoch(0))
    assert len(batches) == len(train)
    for x, y in batches:
        assert x.shape == (BATCH, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
        assert y.shape == (BATCH,) and y.dtype == torch.int64 and x.device.type == "cpu"
    sizes = [len(y) for _, y in evaluation.epoch(0)]
    assert sizes == [64, 16]  # evaluation keeps the last partial batch


@pytest.mark.parametrize("name", LOADER_PARAMS)
def test_epochs_are_deterministic_and_reshuffled(data, beton_dir, name):
    train, _ = make(data, name, beton_dir, seed=5)
    first = [b for b in train.epoch(2)]
    again = [b for b in train.epoch(2)]
    other = [b for b in train.epoch(3)]
    assert len(first) == len(again) == len(train) > 0
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][1], other[0][1])
    # iterating the loader runs epochs 0, 1, ... in turn
    assert torch.equal(next(iter(train))[1], next(iter(train.epoch(0)))[1])
    assert torch.equal(next(iter(train))[1], next(iter(train.epoch(1)))[1])


def test_the_three_loaders_yield_identical_batches_without_augmentation(data, beton_dir):
    results = {}
    for name in ("device", "torch", "ffcv"):
        if not _available(name):
            continue
        train, evaluation = make(data, name, beton_dir, augment=False, seed=2)
        results[name] = (list(train.epoch(4)), list(evaluation.epoch(0)))
    # the reference: the shared order, x/255 - mean/255 straight from the arrays
    order = preprocess.epoch_order(400, seed=2, epoch=4, shuffle=True)[: 8 * BATCH]
    mean01 = preprocess.mean_chw01(preprocess.mean_image(data.x_train))
    expected = torch.from_numpy(data.x_train[order.numpy()]).permute(0, 3, 1, 2).float() / 255 - mean01
    for name, (train_batches, eval_batches) in results.items():
        assert torch.equal(torch.cat([x for x, _ in train_batches]), expected), name
        assert torch.equal(torch.cat([y for _, y in train_batches]), torch.from_numpy(data.y_train[order.numpy()]))
        x_eval = torch.cat([x for x, _ in eval_batches])
        assert np.array_equal(unnormalise(x_eval, mean01), data.x_eval), name
        assert torch.equal(torch.cat([y for _, y in eval_batches]), torch.from_numpy(data.y_eval))
    assert len(results) >= 2


def crop_and_flip_of(augmented: np.ndarray, original: np.ndarray) -> tuple[int, int, bool] | None:
    """The (dy, dx, flipped) window of the zero-padded original that equals ``augmented``."""
    padded = np.pad(original, ((4, 4), (4, 4), (0, 0)))
    for flipped in (False, True):
        source = padded[:, ::-1] if flipped else padded
        for dy in range(9):
            for dx in range(9):
                if np.array_equal(source[dy:dy + 32, dx:dx + 32], augmented):
                    return dy, dx, flipped
    return None


@pytest.mark.parametrize("name", LOADER_PARAMS)
def test_augmentation_is_a_padded_crop_and_a_flip_half_the_time(data, beton_dir, name):
    train, _ = make(data, name, beton_dir, seed=3)
    mean01 = preprocess.mean_chw01(preprocess.mean_image(data.x_train))
    order = preprocess.epoch_order(400, seed=3, epoch=0, shuffle=True).numpy()
    windows = []
    for b, (x, _) in enumerate(train.epoch(0)):
        pixels = unnormalise(x, mean01)
        for i in range(len(pixels)):
            found = crop_and_flip_of(pixels[i], data.x_train[order[b * BATCH + i]])
            assert found is not None, f"{name}: image {b * BATCH + i} is not a window of its padded original"
            windows.append(found)
    dy, dx, flips = (np.array(v) for v in zip(*windows))
    # Symmetric images could match two windows; synthetic ones (noise) do not, so these are exact.
    assert 0.4 < flips.mean() < 0.6
    assert set(dy) == set(range(9)) and set(dx) == set(range(9))
    assert (dy == 4).mean() < 0.3  # not stuck at the centre


def test_torch_loader_with_workers_is_deterministic(data):
    train, _ = build_loaders(data, "torch", batch_size=BATCH, num_workers=2, seed=9)
    a = [x for x, _ in train.epoch(1)]
    b = [x for x, _ in train.epoch(1)]
    assert len(a) == len(b) == len(train) > 0
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_loaders_leave_the_global_rng_and_threads_alone(data, beton_dir):
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    for name in ("device", "torch", "ffcv"):
        if _available(name):
            train, _ = make(data, name, beton_dir)
            for _ in train.epoch(0):
                pass
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_unknown_loader_and_bad_batch_sizes(data):
    with pytest.raises(DataError, match="device"):
        build_loaders(data, "dali")
    with pytest.raises(DataError, match="exceeds"):
        build_loaders(data, batch_size=1000)


def test_ffcv_missing_is_a_data_error_saying_how_to_install(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ffcv", None)  # makes `import ffcv` raise ImportError
    with pytest.raises(DataError) as info:
        build_loaders(data, "ffcv")
    assert "pip install '.[ffcv]'" in str(info.value) and "libturbojpeg0-dev" in str(info.value)


def test_mean_image_is_the_per_pixel_training_mean(data):
    mean = preprocess.mean_image(data.x_train)
    assert mean.shape == (32, 32, 3) and mean.dtype == np.float32
    assert np.allclose(mean, data.x_train.astype(np.float64).mean(axis=0), atol=1e-4)


def test_loss_goes_down_on_synthetic_data_in_a_few_dozen_steps():
    """End to end: synthetic source -> device loader (augmented) -> a tiny net learns."""
    torch.manual_seed(0)
    data = load_cifar10("synthetic", synthetic_size=640, seed=0)
    train, _ = build_loaders(data, "device", batch_size=64, seed=0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(256, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for epoch in range(4):
        for x, y in train.epoch(epoch):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
