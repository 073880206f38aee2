"""ImageNet trials end to end on a tiny generated ImageFolder tree (Table 2's plain-18 vs ResNet-18),
through the torch and the ffcv loaders, and the suite checks that come before."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.__main__ import main
from tests.test_data_imagenet import SIZES, write_jpeg


@pytest.mark.slow
def test_imagenet_suite_trains_through_the_torch_loader(tmp_path: Path) -> None:
    root = _tiny_tree(tmp_path / "imagenet")
    suite = tmp_path / "imagenet_tiny.yaml"
    suite.write_text(f"""
data: {{dataset: imagenet, source: folder, split: val, root: {root}, num_workers: 0}}
loader: torch
recipe: {{name: imagenet_he2015, batch_size: 4, max_steps: 2}}
grid: {{model: [plain18, resnet18]}}
eval_every: 2
eval_batch_size: 2
eval_ten_crop: true
""")
    status = main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"])
    assert status == 0
    runs = pd.read_csv(tmp_path / "results" / "imagenet_tiny" / "runs.csv")
    assert list(runs["status"]) == ["completed", "completed"]
    assert set(runs["data_source"]) == {"folder"} and set(runs["eval_split"]) == {"val"}
    assert list(runs["shortcut"].fillna("")) == ["", "A"]  # Table 2: ResNet-18 with option A
    metrics = pd.read_csv(tmp_path / "results" / "imagenet_tiny" / "metrics.csv")
    assert list(metrics["step"]) == [2, 2] and metrics["eval_top5_error"].between(0, 100).all()
    assert runs["eval_ten_crop"].all()


def _tiny_tree(root: Path) -> Path:
    for c, name in enumerate(["n01440764", "n01443537"]):
        for i, size in enumerate(SIZES):
            write_jpeg(root / "train" / name / f"img{i}.JPEG", size, seed=10 * c + i)
        write_jpeg(root / "val" / name / "val0.jpg", SIZES[c], seed=100 + c)
    return root


FFCV_SUITE = """
data: {{dataset: imagenet, source: folder, split: val, root: {root}, num_workers: 1}}
loader: ffcv
recipe: {{name: imagenet_he2015, batch_size: 4, max_steps: 2}}
grid: {{model: [resnet18]}}
eval_every: 2
eval_batch_size: 2
eval_ten_crop: true
"""


@pytest.mark.slow
@pytest.mark.ffcv
def test_imagenet_suite_trains_through_the_ffcv_loader(tmp_path: Path, capsys) -> None:
    pytest.importorskip("ffcv")
    root = _tiny_tree(tmp_path / "imagenet")
    assert main(["data", "write-beton", "--dataset", "imagenet", "--root", str(root), "--workers", "1"]) == 0
    assert f"train: {root.resolve() / 'ffcv' / 'imagenet-train.beton'}" in capsys.readouterr().out
    suite = tmp_path / "imagenet_ffcv.yaml"
    suite.write_text(FFCV_SUITE.format(root=root))
    status = main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"])
    assert status == 0
    runs = pd.read_csv(tmp_path / "results" / "imagenet_ffcv" / "runs.csv")
    assert list(runs["status"]) == ["completed"] and list(runs["loader"]) == ["ffcv"]
    metrics = pd.read_csv(tmp_path / "results" / "imagenet_ffcv" / "metrics.csv")
    assert list(metrics["step"]) == [2] and metrics["eval_top5_error"].between(0, 100).all()
    # an image replaced since the betons were written: refused before anything starts
    write_jpeg(root / "val" / "n01440764" / "val0.jpg", (320, 240), seed=7)
    capsys.readouterr()
    assert main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "again"), "--no-report"]) == 2
    assert "imagenet-train.beton: written from" in capsys.readouterr().err and not (tmp_path / "again").exists()


@pytest.mark.parametrize("ffcv_installed", [True, False], ids=["with-ffcv", "without-ffcv"])
def test_imagenet_suite_without_its_betons_is_refused_before_anything_starts(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, ffcv_installed: bool
) -> None:
    if ffcv_installed:
        pytest.importorskip("ffcv")
    else:  # a machine without the extra: `import ffcv` fails, and that is what the one line names
        monkeypatch.setitem(sys.modules, "ffcv", None)
    root = _tiny_tree(tmp_path / "imagenet")
    suite = tmp_path / "imagenet_ffcv.yaml"
    suite.write_text(FFCV_SUITE.format(root=root))
    status = main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"), "--no-report"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    if ffcv_installed:
        assert "imagenet-train.beton" in err and f"data write-beton --dataset imagenet --root {root.resolve()}" in err
    else:
        assert "loader: 'ffcv' needs the ffcv extra" in err and "pip install '.[ffcv]'" in err
    assert not (tmp_path / "results").exists()


def test_imagenet_suites_take_ffcv_or_torch_not_device(tmp_path: Path) -> None:
    from benchmark import SuiteError
    from benchmark.suite.spec import load_suite

    suite = tmp_path / "imagenet_device.yaml"
    for loader in ("ffcv", "torch"):
        suite.write_text(FFCV_SUITE.format(root=tmp_path).replace("loader: ffcv", f"loader: {loader}"))
        assert load_suite(suite).loader == loader
    suite.write_text(FFCV_SUITE.format(root=tmp_path).replace("loader: ffcv", "loader: device"))
    with pytest.raises(SuiteError, match="imagenet trains with 'ffcv'.*or 'torch'"):
        load_suite(suite)
