"""The "ffcv" ImageNet loader against the torch one, on a tiny generated ImageFolder tree of
photo-like JPEGs of varied sizes: the paper's scale augmentation (Section 3.4: S in [256, 480], a 224 crop,
a flip), the PCA colour shift, the centre and 10-crop evaluation views, the loader interface, and
the betons' records. FFCV compiles its pipelines with numba: a few seconds per process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from benchmark import DataError
from benchmark.data import imagenet, preprocess
from benchmark.data.beton import import_ffcv
from benchmark.data.loaders import build_imagenet_loaders
from benchmark.data.sample_imagenet import photo_like, write_tree

try:
    import_ffcv()
except DataError:
    pytest.skip("needs the ffcv extra", allow_module_level=True)

from benchmark.data.ffcv_imagenet import (CROP_STREAM, LIGHTING_STREAM, FfcvImagenetLoader,  # noqa: E402
                                          NormaliseLighting, ReusedArrays, ScaleAugmentDecoder,
                                          build_ffcv_imagenet_loaders, image_hashes, lighting_alphas, resized_size,
                                          scale_crop, stream_key)
from benchmark.data.ffcv_loader import FfcvEpochLoader, shard  # noqa: E402
from benchmark.data.imagenet import folder_fingerprint  # noqa: E402
from benchmark.data.imagenet_beton import (BETON_FORMAT_VERSION, beton_paths, check_imagenet_betons,  # noqa: E402
                                           sidecar_path, write_imagenet_betons)
from benchmark.data.resample import resize_window  # noqa: E402

pytestmark = pytest.mark.ffcv

CLASSES = ("n01440764", "n01443537", "n01484850")
TRAIN_SIZES = [(300, 200), (500, 375), (375, 500), (180, 260)]  # (width, height); one below 224
VAL_SIZES = [(500, 375), (300, 200), (333, 500)]  # one per class
MEAN = torch.tensor(imagenet.MEAN).view(3, 1, 1)
STD = torch.tensor(imagenet.STD).view(3, 1, 1)


def make_tree(root: Path, train_sizes=TRAIN_SIZES, val_sizes=VAL_SIZES, seed: int = 0) -> Path:
    write_tree(root, CLASSES, train_sizes, val_sizes, seed=seed)
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The tree and its betons, stored raw (the pixels PIL decodes), so that views compare exactly."""
    root = make_tree(tmp_path_factory.mktemp("imagenet"))
    write_imagenet_betons(root, fields="raw", num_workers=1)
    return root


@pytest.fixture
def tree_copy(tree, tmp_path) -> Path:
    return Path(shutil.copytree(tree, tmp_path / "copy"))


def pixels(x: torch.Tensor) -> np.ndarray:
    """Normalised float32 (..., 3, H, W) back to uint8 (..., H, W, 3)."""
    return ((x * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).numpy()


# ------------------------------------------------------------------------------- training views

@pytest.mark.parametrize("size, shorter", [((500, 375), 256), ((500, 375), 480), ((180, 260), 256), ((96, 128), 300)])
def test_resize_window_is_pillows_bilinear(size, shorter):
    image = photo_like(size, 4)
    height, width = resized_size(size[1], size[0], shorter)
    expected = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    whole = np.empty((height, width, 3), np.uint8)
    resize_window(image, height, width, 0, 0, whole)
    assert np.array_equal(whole, expected)  # Pillow's arithmetic, to the last bit
    window = np.empty((100, 120, 3), np.uint8)  # any window, computed alone
    resize_window(image, height, width, 7, 11, window)
    assert np.array_equal(window, whole[7:107, 11:131])
    resize_window(image, height, width, 7, 11, window, flip=True)
    assert np.array_equal(window, whole[7:107, 11:131][:, ::-1])


def test_scale_crop_lies_inside_the_image_at_the_papers_scales():
    hashes = image_hashes(np.uint64(7), np.arange(4000, dtype=np.uint64))
    for width, height in [(300, 200), (500, 375), (375, 500), (180, 260), (1000, 480)]:
        scales, tops, lefts, flips = np.array([scale_crop(height, width, z, 256, 480, 224) for z in hashes]).T
        assert scales.min() == 256 and scales.max() == 480  # S drawn from the whole of [256, 480]
        resized = np.array([resized_size(height, width, s) for s in scales])
        assert (resized.min(axis=1) == scales).all()  # the shorter side becomes S
        assert (tops >= 0).all() and (lefts >= 0).all()
        assert (tops + 224 <= resized[:, 0]).all() and (lefts + 224 <= resized[:, 1]).all()  # inside the image
        assert 0.46 < flips.mean() < 0.54  # p = 1/2 (4,000 draws: sd 0.008)
        spare_rows, spare_cols = resized[:, 0] - 224, resized[:, 1] - 224
        assert 0.45 < np.mean(tops / spare_rows) < 0.55 and 0.45 < np.mean(lefts / spare_cols) < 0.55  # uniform
        quarters = np.histogram(scales, bins=4, range=(256, 481))[0] / len(hashes)
        assert np.abs(quarters - 0.25).max() < 0.03  # S uniform


def test_training_views_are_the_torch_paths_views_of_the_drawn_crops(tree):
    """Every training image is the torch path's view for the same draws (RandomShorterSide's PIL
    resize to S, the crop, the flip), pixel for pixel, over two reshuffled epochs."""
    train_beton, _ = beton_paths(tree)
    seed, batch = 3, 4
    loader = FfcvImagenetLoader(train_beton, batch, seed=seed, augment=True, shuffle=True, drop_last=True,
                                lighting_std=0.0, num_workers=1)
    train, _ = imagenet.load_imagenet(tree)
    flips = []
    for epoch in (0, 1):
        order = preprocess.epoch_order(len(train), seed, epoch, True).numpy().astype(np.uint64)
        for b, (x, y) in enumerate(loader.epoch(epoch)):
            indices = order[b * batch:(b + 1) * batch]
            assert x.shape == (batch, 3, 224, 224) and y.tolist() == [train.samples[i][1] for i in indices]
            for view, index, z in zip(pixels(x), indices, image_hashes(stream_key(seed, CROP_STREAM), indices)):
                image = imagenet.open_rgb(train.samples[index][0])
                scale, top, left, flip = scale_crop(image.height, image.width, z, 256, 480, 224)
                expected = TF.crop(TF.resize(image, scale, interpolation=InterpolationMode.BILINEAR, antialias=True),
                                   top, left, 224, 224)
                expected = np.asarray(TF.hflip(expected) if flip else expected)
                assert np.array_equal(view, expected)
                flips.append(flip)
    assert 0 < sum(flips) < len(flips)  # some images flipped, some not


def test_lighting_is_one_pca_shift_per_image(tree):
    train_beton, _ = beton_paths(tree)
    plain, lit = (FfcvImagenetLoader(train_beton, 6, seed=5, augment=True, shuffle=True, drop_last=True,
                                     lighting_std=std, num_workers=1) for std in (0.0, 0.1))
    order = preprocess.epoch_order(12, 5, 0, True).numpy().astype(np.uint64)
    lighting = imagenet.Lighting(0.1)
    for b, ((x0, _), (x1, _)) in enumerate(zip(plain.epoch(0), lit.epoch(0))):
        alphas = torch.from_numpy(lighting_alphas(stream_key(5, LIGHTING_STREAM), order[b * 6:(b + 1) * 6])) * 0.1
        expected = lighting.shift(alphas).view(6, 3, 1, 1) / STD  # the same crops, shifted in colour
        assert torch.allclose(x1 - x0, expected.expand_as(x0), atol=1e-5)
    draws = lighting_alphas(np.uint64(1), np.arange(20_000, dtype=np.uint64))
    assert np.abs(draws.mean(axis=0)).max() < 0.03 and np.abs(draws.std(axis=0) - 1).max() < 0.03  # N(0, 1)
    assert np.abs(np.corrcoef(draws.T) - np.eye(3)).max() < 0.03


def test_normalising_on_the_device_gives_the_same_batches(tree):
    """The pipeline for a GPU (uint8 through ToTensor/ToDevice, normalised by torch code after it),
    run on the CPU, gives the batches of the CPU pipeline (normalised in FFCV's jitted stage)."""
    from ffcv.transforms import ToTensor

    class TorchNormalising(FfcvEpochLoader):
        def __init__(self, beton: Path) -> None:
            ops = [ScaleAugmentDecoder(5), ToTensor(), NormaliseLighting(5, 0.1)]
            super().__init__(beton, ops, 6, torch.device("cpu"), 5, True, True, 1)

        finish = FfcvImagenetLoader.finish

    train_beton, _ = beton_paths(tree)
    jitted = FfcvImagenetLoader(train_beton, 6, seed=5, augment=True, shuffle=True, drop_last=True, num_workers=1)
    for (a, y_a), (b, y_b) in zip(jitted.epoch(1), TorchNormalising(train_beton).epoch(1)):
        assert torch.equal(y_a, y_b) and torch.allclose(a, b, atol=1e-5)


# ----------------------------------------------------------------------------- evaluation views

@pytest.mark.parametrize("ten_crop", [False, True], ids=["centre", "ten-crop"])
def test_evaluation_views_match_the_torch_path(tree, ten_crop):
    _, val_beton = beton_paths(tree)
    ffcv_views = FfcvImagenetLoader(val_beton, 2, ten_crop=ten_crop, num_workers=1)
    _, torch_views = build_imagenet_loaders(tree, eval_batch_size=2, num_workers=0, ten_crop=ten_crop)
    ours, theirs = list(ffcv_views.epoch(0)), list(torch_views.epoch(0))
    assert [len(y) for _, y in ours] == [2, 1] and all(torch.equal(a[1], b[1]) for a, b in zip(ours, theirs))
    x_ffcv = torch.cat([x for x, _ in ours])
    x_torch = torch.cat([x for x, _ in theirs])
    assert x_ffcv.shape == x_torch.shape == ((3, 10, 3, 224, 224) if ten_crop else (3, 3, 224, 224))
    # the same crops, in the same order, of the same resize (raw betons: the pixels PIL decodes)
    assert np.array_equal(pixels(x_ffcv), pixels(x_torch)) and torch.allclose(x_ffcv, x_torch, atol=1e-5)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(32, 10)).eval()
    with torch.no_grad():
        p_ffcv, p_torch = (imagenet.ten_crop_predict(model, x) if ten_crop else model(x).softmax(-1)
                           for x in (x_ffcv, x_torch))
    assert torch.equal(p_ffcv.argmax(1), p_torch.argmax(1))
    assert (p_ffcv - p_torch).abs().max() < 1e-5


# ------------------------------------------------------------------------------ loader interface

def test_loaders_keep_the_interface(tree):
    train, evaluation = build_ffcv_imagenet_loaders(tree, batch_size=4, eval_batch_size=2, num_workers=1)
    assert len(train) == 3 and train.num_examples == 12 and len(evaluation) == 2 and evaluation.num_examples == 3
    kept = list(train.epoch(0))
    copied = [(x.clone(), y.clone()) for x, y in train.epoch(0)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(kept, copied))  # deterministic, not reused
    x, y = kept[0]
    assert x.dtype == torch.float32 and x.shape == (4, 3, 224, 224) and y.dtype == torch.int64
    other = list(train.epoch(1))
    assert not torch.equal(torch.cat([x for x, _ in kept]), torch.cat([x for x, _ in other]))  # reshuffled, new crops
    assert sorted(torch.cat([y for _, y in other]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4


def test_batch_arrays_are_reused_only_once_nobody_holds_them():
    pool = ReusedArrays()
    first, second = pool.empty((4, 3)), pool.empty((4, 3))
    assert second is not first  # `first` is held: never handed out twice
    address = first.ctypes.data
    del first
    third = pool.empty((4, 3))
    assert third.ctypes.data == address and len(pool.arrays) == 2  # dropped, so reused: nothing allocated
    batch = torch.from_numpy(second).movedim(-1, 0)  # what the loader yields: a tensor view holds the array
    address = second.ctypes.data
    del second
    fourth = pool.empty((4, 3))
    assert fourth.ctypes.data != address and len(pool.arrays) == 3  # still held by the tensor
    del batch
    assert pool.empty((4, 3)).ctypes.data == address  # now free
    assert pool.empty((2, 3)).shape == (2, 3)  # another shape: a new array


def test_shard_splits_an_epoch_by_rank():
    order = np.array([5, 3, 0, 4, 1, 2, 6])
    training = [shard(order, rank, 3, pad=True) for rank in range(3)]
    assert [s.tolist() for s in training] == [[5, 4, 6], [3, 1, 5], [0, 2, 3]]  # padded from the head: equal shares
    evaluation = [shard(order, rank, 3, pad=False) for rank in range(3)]
    assert sorted(np.concatenate(evaluation).tolist()) == sorted(order.tolist())  # every image exactly once


def test_distributed_needs_a_process_group(tree):
    with pytest.raises(Exception, match="torch.distributed process group"):
        FfcvImagenetLoader(beton_paths(tree)[0], 4, augment=True, distributed=True, num_workers=1)


# --------------------------------------------------------------------------- betons and records

def test_writer_caps_the_shorter_side_and_records_the_folder(tmp_path):
    from ffcv.reader import Reader

    root = make_tree(tmp_path / "tree", train_sizes=[(500, 375), (180, 260)], val_sizes=[(500, 375)] * 3)
    train, val = write_imagenet_betons(root, max_shorter_side=300, num_workers=1)
    assert (train, val) == beton_paths(root)
    metadata = Reader(str(train)).metadata["f0"]
    sizes = sorted(zip(metadata["width"].tolist(), metadata["height"].tolist()))
    assert sizes == [(180, 260)] * 3 + [(400, 300)] * 3  # 500x375 shrunk to shorter side 300; small ones kept
    record = json.loads(sidecar_path(train).read_text())
    assert record["format_version"] == BETON_FORMAT_VERSION and record["images"] == 6 and record["classes"] == 3
    assert record["source_folder"] == str(root.resolve()) and record["split"] == "train" and record["fields"] == "jpeg"
    assert record["fingerprint"] == imagenet.folder_fingerprint(root)
    assert record["beton_bytes"] == train.stat().st_size
    assert not list(train.parent.glob(".*tmp"))


def test_missing_beton_names_the_command(tmp_path):
    root = make_tree(tmp_path / "tree")
    with pytest.raises(DataError, match=r"imagenet-train\.beton: no FFCV \.beton .* write it with: python -m benchmark "
                                        r"data write-beton --dataset imagenet --root "):
        check_imagenet_betons(root)


def test_beton_of_another_folder_is_named(tree, tmp_path):
    other = make_tree(tmp_path / "other", seed=50, train_sizes=TRAIN_SIZES[:3])
    shutil.copytree(tree / "ffcv", other / "ffcv")
    check_imagenet_betons(other)  # present, of this format, whole: all a trial checks on its node
    with pytest.raises(DataError, match=rf"written from {tree.resolve()} \(fingerprint .*\), not from "
                                        rf"{other.resolve()} as it is now"):
        check_imagenet_betons(other, folder_fingerprint(other))


def test_changed_folder_is_detected(tree_copy):
    check_imagenet_betons(tree_copy, folder_fingerprint(tree_copy))  # a copy of the tree is the same data
    image = tree_copy / "val" / CLASSES[0] / "val0.JPEG"
    Image.fromarray(photo_like((500, 375), 999)).save(image, quality=90)  # replaced since writing
    with pytest.raises(DataError, match="imagenet-train.beton: written from .* as it is now"):
        check_imagenet_betons(tree_copy, folder_fingerprint(tree_copy))


@pytest.mark.parametrize("damage, message", [
    ("no-record", r"no imagenet-train\.beton\.json beside it \(an older format"),
    ("old-version", r"beton format version 0, this code reads version 1"),
    ("old-name", r"imagenet-train-jpeg\.beton beside it is of an older format"),
    ("truncated", r"bytes, but imagenet-train\.beton\.json records"),
])
def test_older_or_damaged_betons_are_named(tree_copy, damage, message):
    train, _ = beton_paths(tree_copy)
    record = sidecar_path(train)
    if damage == "no-record":
        record.unlink()
    elif damage == "old-version":
        record.write_text(json.dumps({**json.loads(record.read_text()), "format_version": 0}))
    elif damage == "old-name":
        train.rename(train.with_name("imagenet-train-jpeg.beton"))
    else:
        with train.open("r+b") as handle:
            handle.truncate(train.stat().st_size // 2)
    with pytest.raises(DataError, match=message) as info:
        build_ffcv_imagenet_loaders(tree_copy)
    assert "write-beton --dataset imagenet" in str(info.value)
