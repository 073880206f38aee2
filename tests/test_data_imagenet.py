"""ImageNet folders: scanning, the paper's train/eval transforms (Section 3.4), 10-crop, loaders,
errors, on a small folder of generated JPEGs (the FFCV path: test_data_ffcv_imagenet.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from benchmark import DataError
from benchmark.data import imagenet
from benchmark.data.loaders import build_imagenet_loaders

SIZES = [(300, 200), (180, 260), (96, 128), (500, 375)]  # (width, height): varied, some below 224


def write_jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=85)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "imagenet"
    for c, name in enumerate(["n01440764", "n01443537", "n01484850"]):
        for i, size in enumerate(SIZES):
            write_jpeg(root / "train" / name / f"img{i}.JPEG", size, seed=10 * c + i)
        write_jpeg(root / "val" / name / "val0.jpg", SIZES[c], seed=100 + c)
    return root


def test_scan_lists_classes_and_samples(folder):
    train, val = imagenet.load_imagenet(folder)
    assert train.classes == ("n01440764", "n01443537", "n01484850") and val.classes == train.classes
    assert len(train) == 12 and len(val) == 3
    assert [label for _, label in val.samples] == [0, 1, 2]


def test_train_transform_shapes_and_scale_range(folder):
    train, _ = imagenet.load_imagenet(folder)
    torch.manual_seed(0)
    image = imagenet.open_rgb(train.samples[0][0])
    out = imagenet.train_transform()(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    sides = {min(imagenet.RandomShorterSide()(image).size) for _ in range(40)}
    assert min(sides) >= 256 and max(sides) <= 480 and len(sides) > 10


def test_lighting_adds_the_pca_shift():
    lighting = imagenet.Lighting(0.1)
    # alpha on the first component only: the shift is eigenvector 1 (a column of fb.resnet.torch's
    # eigvec) times eigenvalue 0.2175, by hand 0.2175 x (-0.5675, -0.5808, -0.5836).
    first = lighting.shift(torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(first, torch.tensor([-0.12343, -0.12632, -0.12693]), atol=1e-5)
    image = torch.rand(3, 8, 8)
    torch.manual_seed(1)
    out = lighting(image)
    torch.manual_seed(1)
    alpha = torch.randn(3) * 0.1  # the draw the call made
    delta = (out - image).flatten(1)
    assert torch.allclose(delta, lighting.shift(alpha)[:, None].expand_as(delta))  # one shift for every pixel
    assert imagenet.Lighting(0.0)(image) is image


def test_eval_transforms(folder):
    _, val = imagenet.load_imagenet(folder)
    image = imagenet.open_rgb(val.samples[0][0])
    assert imagenet.eval_transform()(image).shape == (3, 224, 224)
    assert imagenet.ten_crop_transform()(image).shape == (10, 3, 224, 224)


def test_batched_ten_crop_matches_torchvision():
    images = torch.rand(2, 3, 256, 301)
    ours = imagenet.ten_crop(images)
    for b in range(2):
        theirs = torch.stack(transforms.TenCrop(224)(images[b]))
        assert torch.equal(ours[b], theirs)
    with pytest.raises(DataError, match="smaller"):
        imagenet.ten_crop(torch.rand(1, 3, 100, 300))


def test_ten_crop_predict_averages_the_probabilities():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 5))
    images = torch.rand(3, 3, 256, 256)
    crops = imagenet.ten_crop(images)
    expected = torch.stack([model(crops[b]).softmax(-1).mean(0) for b in range(3)])
    assert torch.allclose(imagenet.ten_crop_predict(model, images), expected, atol=1e-6)
    assert torch.allclose(imagenet.ten_crop_predict(model, crops), expected, atol=1e-6)


def test_torch_loaders(folder):
    train, evaluation = build_imagenet_loaders(folder, batch_size=4, eval_batch_size=2, num_workers=0)
    assert len(train) == 3 and len(evaluation) == 2 and train.num_examples == 12
    first = list(train.epoch(0))
    x, y = first[0]
    assert x.shape == (4, 3, 224, 224) and y.dtype == torch.int64
    again = list(train.epoch(0))
    assert len(first) == len(again) == 3
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))  # deterministic per epoch
    _, ten = build_imagenet_loaders(folder, batch_size=4, eval_batch_size=2, num_workers=0, ten_crop=True)
    assert next(iter(ten.epoch(0)))[0].shape == (2, 10, 3, 224, 224)


def test_missing_or_empty_folders_are_named(tmp_path, folder):
    with pytest.raises(DataError, match=str(tmp_path / "nowhere" / "train")):
        imagenet.load_imagenet(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    (empty / "train" / "n0").mkdir(parents=True)
    (empty / "train" / "n0" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=f"{empty / 'train'}: no images"):
        imagenet.load_imagenet(empty)
    (folder / "val" / "n99999999").mkdir()
    with pytest.raises(DataError, match="n99999999"):
        imagenet.load_imagenet(folder)


def test_undecodable_image_is_named(folder):
    bad = folder / "train" / "n01443537" / "img1.JPEG"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated JPEG
    train, _ = imagenet.load_imagenet(folder)
    dataset = imagenet.ImageFolderDataset(train, imagenet.eval_transform())
    index = [path for path, _ in train.samples].index(bad)
    with pytest.raises(DataError, match=str(bad)):
        dataset[index]
    with pytest.raises(DataError, match=str(bad)):
        imagenet.check_images(train, workers=2, chunk=3)


def test_ffcv_loader_without_ffcv_gives_the_install_line(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "ffcv", None)  # makes `import ffcv` raise ImportError
    with pytest.raises(DataError) as info:
        build_imagenet_loaders(folder, loader="ffcv")
    assert "pip install '.[ffcv]'" in str(info.value) and "libturbojpeg0-dev" in str(info.value)


@pytest.mark.ffcv
def test_ffcv_writer_refuses_a_broken_image_before_writing(folder, tmp_path):
    pytest.importorskip("ffcv")
    from benchmark.data.imagenet_beton import write_imagenet_betons

    bad = folder / "val" / "n01440764" / "val0.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=str(bad)):
        write_imagenet_betons(folder, tmp_path / "out", num_workers=1)
    assert not list((tmp_path / "out").glob("imagenet-val*"))
