"""CIFAR-10 sources: synthetic, torchvision (official batches), auto resolution, splits, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from benchmark import DataError
from benchmark.data import CLASS_NAMES, load_cifar10, resolve_auto
from benchmark.data.cifar import ENV_VAR, SHARED_NPZ, split_45k


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No env var, an empty default data root, and a cwd without ../shared/data."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def write_fake_batches(root: Path, per_batch: int = 20, test: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """A cifar-10-batches-py folder in the official pickle format (tiny, random pixels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    images, labels = [], []
    for name, count in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        targets = [int(v) for v in rng.integers(0, 10, size=count)]
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": targets}, handle)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(np.asarray(targets))
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(CLASS_NAMES)}, handle)
    return np.concatenate(images[:5]), np.concatenate(labels[:5])


@pytest.fixture
def fake_batches(tmp_path, monkeypatch):
    """Fake official batches; torchvision's md5 checks are for the real files, so bypass them."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    root = tmp_path / "cifar"
    x, y = write_fake_batches(root)
    return root, x, y


def test_synthetic_is_deterministic_cifar_shaped_and_read_only():
    a = load_cifar10("synthetic", synthetic_size=200, seed=3)
    b = load_cifar10("synthetic", synthetic_size=200, seed=3)
    c = load_cifar10("synthetic", synthetic_size=200, seed=4)
    assert a.x_train.shape == (200, 32, 32, 3) and a.x_train.dtype == np.uint8
    assert a.x_eval.shape == (40, 32, 32, 3)
    assert a.y_train.dtype == np.int64 and a.y_eval.dtype == np.int64
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_eval, b.y_eval)
    assert not np.array_equal(a.x_train, c.x_train)
    assert np.bincount(a.y_train, minlength=10).tolist() == [20] * 10
    assert (a.source, a.split, a.eval_split, a.class_names) == ("synthetic", "train50k", "test", CLASS_NAMES)
    with pytest.raises(ValueError):
        a.x_train[0, 0, 0, 0] = 1  # read-only: nobody mutates the shared arrays


def test_synthetic_classes_are_separable_by_their_templates():
    data = load_cifar10("synthetic", synthetic_size=500)
    centroids = np.stack([data.x_train[data.y_train == k].mean(0) for k in range(10)])
    dist = ((data.x_eval[:, None].astype(np.float32) - centroids[None]) ** 2).sum(axis=(2, 3, 4))
    assert (dist.argmin(1) == data.y_eval).mean() > 0.5  # nearest centroid already beats chance (0.1)


@pytest.mark.parametrize("kwargs, allowed", [({"source": "cifar100"}, "synthetic"),
                                             ({"source": "synthetic", "split": "train40k"}, "train45k")])
def test_unknown_source_or_split_lists_the_allowed_values(kwargs, allowed):
    with pytest.raises(DataError, match=allowed):
        load_cifar10(**kwargs)


def test_train45k_is_a_fixed_stratified_90_10_split():
    full = load_cifar10("synthetic", synthetic_size=1000)
    split = load_cifar10("synthetic", split="train45k", synthetic_size=1000)
    assert split.x_train.shape[0] == 900 and split.x_eval.shape[0] == 100 and split.eval_split == "val"
    assert np.bincount(split.y_eval, minlength=10).tolist() == [10] * 10
    train_idx, val_idx = split_45k(full.y_train, seed=0)
    assert not set(train_idx) & set(val_idx) and len(train_idx) + len(val_idx) == 1000
    assert np.array_equal(split.x_eval, full.x_train[val_idx])
    again, _ = split_45k(full.y_train, seed=0)
    assert np.array_equal(again, train_idx)


def test_paper_split_sizes_on_50k_labels():
    labels = np.repeat(np.arange(10), 5000)
    train_idx, val_idx = split_45k(labels, seed=0)
    assert (len(train_idx), len(val_idx)) == (45_000, 5_000)
    assert np.bincount(labels[val_idx]).tolist() == [500] * 10


def test_torchvision_source_reads_official_batches(fake_batches):
    root, x, y = fake_batches
    data = load_cifar10("torchvision", root=root, download=False)
    assert data.source == "torchvision" and data.x_train.shape == (100, 32, 32, 3)
    assert np.array_equal(data.x_train, x) and np.array_equal(data.y_train, y)
    assert data.x_eval.shape == (30, 32, 32, 3)
    # the batches folder itself works as a root too
    assert np.array_equal(load_cifar10("torchvision", root=root / "cifar-10-batches-py", download=False).x_train, x)


def test_auto_prefers_the_environment_variable(isolated, fake_batches, monkeypatch):
    root, x, _ = fake_batches
    monkeypatch.setenv(ENV_VAR, str(root))
    data = load_cifar10("auto", download=False)
    assert data.source == "torchvision" and np.array_equal(data.x_train, x)


def test_auto_env_var_naming_nothing_is_an_error(isolated, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(isolated / "missing"))
    with pytest.raises(DataError, match=ENV_VAR):
        load_cifar10("auto", download=False)


def test_auto_order_root_then_data_root_then_shared_npz(isolated, fake_batches):
    root, _, _ = fake_batches
    work = isolated / "work"
    npz = work / SHARED_NPZ
    npz.parent.mkdir(parents=True)
    npz.write_bytes(b"placeholder")
    nowhere = isolated / "repo"
    assert resolve_auto(root, environ={}, cwd=work, repo_root=nowhere, download=False) == ("torchvision", root)
    assert resolve_auto(None, environ={}, cwd=work, repo_root=nowhere, download=False)[0] == "jpeg75"
    assert resolve_auto(npz, environ={}, cwd=nowhere, repo_root=nowhere, download=False) == ("jpeg75", npz)
    data_root = isolated / "xdg" / "resnet-benchmark" / "cifar10"
    write_fake_batches(data_root)
    assert resolve_auto(None, environ={}, cwd=work, repo_root=nowhere, download=False) == ("torchvision", data_root)


def test_auto_explicit_npz_that_does_not_exist_is_an_error(isolated):
    with pytest.raises(DataError, match="typo.npz: no such npz file"):
        resolve_auto(isolated / "typo.npz", environ={}, cwd=isolated / "work", download=False)


def test_missing_dataset_is_one_error_saying_where_and_how(isolated):
    with pytest.raises(DataError) as info:
        resolve_auto(None, environ={}, cwd=isolated / "work", repo_root=isolated / "repo", download=False)
    message = str(info.value)
    assert "\n" not in message
    for expected in ("cifar-10-batches-py", str(isolated / "work" / SHARED_NPZ), ENV_VAR, "data.source"):
        assert expected in message


def test_failed_download_is_reported_in_the_same_error(isolated, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(self):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(tv_cifar.CIFAR10, "download", offline)
    with pytest.raises(DataError, match="download into .* failed.*Name or service"):
        resolve_auto(None, environ={}, cwd=isolated / "work", repo_root=isolated / "repo", download=True)


def test_torchvision_source_without_data_names_the_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "empty")):
        load_cifar10("torchvision", root=tmp_path / "empty", download=False)
