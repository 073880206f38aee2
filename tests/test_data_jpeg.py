"""The "jpeg75" source: checksum, structure checks, decode, cache (atomic, keyed by the file's hash)."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark import DataError
from benchmark.data import jpeg_npz, load_cifar10
from benchmark.data.cifar import CLASS_NAMES

SHARED_NPZ = Path(__file__).resolve().parents[1].parent / "shared" / "data" / jpeg_npz.KNOWN_NAME


@pytest.fixture(scope="session")
def decoded(tmp_path_factory):
    """The real file, decoded once per test session into a fresh cache (10-20 s on 2 cores)."""
    if not SHARED_NPZ.is_file():
        pytest.skip(f"{SHARED_NPZ} is absent (it lies beside the checkout on dev/CI machines only)")
    return jpeg_npz.load_jpeg_npz(SHARED_NPZ, cache_dir=tmp_path_factory.mktemp("jpeg-cache"))


def make_npz(path: Path, count: int = 20, quality: int = 95, seed: int = 0) -> np.ndarray:
    """A small npz in the format of the shared file; returns the original pixels."""
    rng = np.random.default_rng(seed)
    # smooth images, so JPEG keeps them close to the original
    base = rng.integers(30, 220, size=(count, 1, 1, 3))
    ramp = np.linspace(0, 30, 32)[None, :, None, None]
    images = np.clip(base + ramp, 0, 255).astype(np.uint8).repeat(32, axis=2)
    arrays = {}
    for split, part in (("train", images[: count // 2]), ("test", images[count // 2:])):
        blobs = []
        for image in part:
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
            blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
        arrays[f"y_{split}"] = (np.arange(len(part)) % 10).astype(np.uint8)
    arrays["class_names"] = np.asarray(CLASS_NAMES)
    np.savez(path, **arrays)
    return images


def test_decoded_arrays_match_the_readme_checksums(decoded):
    assert decoded.x_train.shape == (50_000, 32, 32, 3) and decoded.x_test.shape == (10_000, 32, 32, 3)
    assert hashlib.sha256(decoded.x_train.tobytes()).hexdigest() == jpeg_npz.DECODED_TRAIN_SHA256
    assert hashlib.sha256(decoded.x_test.tobytes()).hexdigest() == jpeg_npz.DECODED_TEST_SHA256
    assert np.bincount(decoded.y_train).tolist() == [5000] * 10
    assert np.bincount(decoded.y_test).tolist() == [1000] * 10
    assert decoded.class_names == CLASS_NAMES
    means = decoded.x_train.reshape(-1, 3).mean(axis=0)
    assert np.allclose(means, [125.27, 122.93, 113.86], atol=0.01)


def refuse_to_decode(*args, **kwargs):
    raise AssertionError("decoded the JPEGs although a valid cache was there")


def test_second_load_reads_the_cache(decoded, monkeypatch):
    monkeypatch.setattr(jpeg_npz, "decode_jpegs", refuse_to_decode)
    again = jpeg_npz.load_jpeg_npz(SHARED_NPZ, cache_dir=decoded.cache_file.parent)
    assert again.cache_file == decoded.cache_file
    assert np.array_equal(again.x_test, decoded.x_test) and again.y_train.dtype == np.int64
    assert [p.name for p in decoded.cache_file.parent.iterdir()] == [decoded.cache_file.name]


def test_jpeg75_source_through_load_cifar10(decoded):
    data = load_cifar10("jpeg75", root=SHARED_NPZ, cache_dir=decoded.cache_file.parent)
    assert data.source == "jpeg75" and Path(data.location).resolve() == SHARED_NPZ.resolve()  # ../shared may be a link
    assert np.array_equal(data.x_eval, decoded.x_test) and data.eval_split == "test"


def test_truncated_known_file_is_a_checksum_error_and_caches_nothing(tmp_path):
    if not SHARED_NPZ.is_file():
        pytest.skip(f"{SHARED_NPZ} is absent")
    truncated = tmp_path / jpeg_npz.KNOWN_NAME
    truncated.write_bytes(SHARED_NPZ.read_bytes()[:5_000_000])
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        jpeg_npz.load_jpeg_npz(truncated, cache_dir=cache)
    message = str(info.value)
    assert str(truncated) in message and jpeg_npz.KNOWN_SHA256 in message
    assert hashlib.sha256(truncated.read_bytes()).hexdigest() in message
    assert not cache.exists() or not any(cache.iterdir())


def test_user_npz_is_checked_by_structure_and_decoded(tmp_path):
    original = make_npz(tmp_path / "mine.npz")
    cache = tmp_path / "cache"
    decoded = jpeg_npz.load_jpeg_npz(tmp_path / "mine.npz", cache_dir=cache, workers=1)
    assert decoded.x_train.shape == (10, 32, 32, 3) and decoded.x_test.shape == (10, 32, 32, 3)
    error = np.abs(decoded.x_train.astype(int) - original[:10].astype(int)).mean()
    assert error < 3  # JPEG at quality 95 of smooth images
    assert decoded.y_test.dtype == np.int64
    # the cache is keyed by the file's hash: a different file gets a different entry
    make_npz(tmp_path / "mine.npz", seed=1)
    other = jpeg_npz.load_jpeg_npz(tmp_path / "mine.npz", cache_dir=cache, workers=1)
    assert other.cache_file != decoded.cache_file
    assert not any(p.name.endswith(".tmp") for p in cache.iterdir())


def test_truncated_user_npz_names_the_file_and_caches_nothing(tmp_path):
    make_npz(tmp_path / "full.npz")
    broken = tmp_path / "mine.npz"
    broken.write_bytes((tmp_path / "full.npz").read_bytes()[:1500])
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=str(broken)):
        jpeg_npz.load_jpeg_npz(broken, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_undecodable_jpeg_names_the_file_and_caches_nothing(tmp_path):
    path = tmp_path / "mine.npz"
    make_npz(path)
    with np.load(path) as archive:
        arrays = {key: archive[key].copy() for key in archive.files}
    start, stop = arrays["train_offsets"][3], arrays["train_offsets"][4]
    arrays["train_jpeg"][start + 2:stop] = 7  # keep the SOI marker, destroy the rest
    np.savez(path, **arrays)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="mine.npz.*cannot be decoded"):
        jpeg_npz.load_jpeg_npz(path, cache_dir=cache, workers=1)
    assert not cache.exists() or not any(cache.iterdir())
    with pytest.raises(DataError, match=r"mine\.npz train\[2:4\].*cannot be decoded"):  # through the pool
        jpeg_npz.decode_jpegs(arrays["train_jpeg"], arrays["train_offsets"], f"{path} train", workers=2, chunk_size=2)


@pytest.mark.parametrize("damage, problem", [("offsets", "offsets"), ("labels", "0..9"), ("keys", "missing")])
def test_malformed_user_npz_is_rejected(tmp_path, damage, problem):
    path = tmp_path / "mine.npz"
    make_npz(path)
    with np.load(path) as archive:
        arrays = {key: archive[key].copy() for key in archive.files}
    if damage == "offsets":
        arrays["test_offsets"][-1] += 5
    elif damage == "labels":
        arrays["y_train"][0] = 12
    else:
        del arrays["y_test"]
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=problem):
        jpeg_npz.load_jpeg_npz(path, cache_dir=tmp_path / "cache")


def test_unreadable_cache_is_rebuilt(tmp_path, monkeypatch):
    path = tmp_path / "mine.npz"
    make_npz(path)
    cache = tmp_path / "cache"
    first = jpeg_npz.load_jpeg_npz(path, cache_dir=cache, workers=1)
    decodes = []
    real_decode = jpeg_npz.decode_jpegs
    monkeypatch.setattr(jpeg_npz, "decode_jpegs", lambda *a, **k: decodes.append(a[2]) or real_decode(*a, **k))
    first.cache_file.write_bytes(b"garbage")
    again = jpeg_npz.load_jpeg_npz(path, cache_dir=cache, workers=1)
    assert np.array_equal(again.x_train, first.x_train)
    assert len(decodes) == 2  # train and test decoded again: the garbage cache was not trusted
    monkeypatch.setattr(jpeg_npz, "decode_jpegs", refuse_to_decode)
    assert np.array_equal(jpeg_npz.load_jpeg_npz(path, cache_dir=cache, workers=1).x_test, first.x_test)


def test_a_copy_of_the_known_file_under_its_name_passes(tmp_path):
    if not SHARED_NPZ.is_file():
        pytest.skip(f"{SHARED_NPZ} is absent")
    copy = tmp_path / jpeg_npz.KNOWN_NAME
    shutil.copyfile(SHARED_NPZ, copy)
    assert jpeg_npz.verify_npz(copy) == jpeg_npz.KNOWN_SHA256
