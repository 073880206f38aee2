"""``python -m benchmark data ...``."""

from __future__ import annotations

import pytest

from benchmark.__main__ import main


def test_prepare_synthetic_prints_what_was_resolved(capsys):
    assert main(["data", "prepare", "--source", "synthetic", "--synthetic-size", "100"]) == 0
    out = capsys.readouterr().out
    assert "source: synthetic" in out and "train (100, 32, 32, 3)" in out


def test_prepare_missing_data_exits_2_with_one_line(tmp_path, capsys):
    status = main(["data", "prepare", "--source", "torchvision", "--root", str(tmp_path / "none"), "--no-download"])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and str(tmp_path / "none") in err


def test_data_without_subcommand_prints_help(capsys):
    assert main(["data"]) == 2
    assert "write-beton" in capsys.readouterr().out


@pytest.mark.ffcv
def test_write_beton(tmp_path, capsys):
    pytest.importorskip("ffcv")
    status = main(["data", "write-beton", "--source", "synthetic", "--synthetic-size", "60", "--split", "train45k",
                   "--out", str(tmp_path), "--fields", "jpeg", "--workers", "1"])
    assert status == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and all(n.endswith("-jpeg.beton") for n in names)
    assert any("-train-" in n for n in names) and any("-val-" in n for n in names)
    assert "train:" in capsys.readouterr().out


def test_sample_imagenet_writes_a_loadable_tree_and_never_overwrites(tmp_path, capsys):
    from benchmark.data.imagenet import load_imagenet

    root = tmp_path / "sample"
    assert main(["data", "sample-imagenet", "--root", str(root), "--classes", "2", "--train-per-class", "3", "--val", "2"]) == 0
    assert "8 JPEGs" in capsys.readouterr().out  # 2 classes x 3 + 2
    train, val = load_imagenet(root)
    assert len(train.samples) == 6 and len(val.samples) == 2 and len(train.classes) == 2
    assert main(["data", "sample-imagenet", "--root", str(root)]) == 2
    assert f"{root} exists" in capsys.readouterr().err
