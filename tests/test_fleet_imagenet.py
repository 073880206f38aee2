"""An ImageNet trial end to end on a tiny generated ImageFolder tree (Table 2's plain-18 vs ResNet-18)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.__main__ import main
from tests.test_data_imagenet import SIZES, write_jpeg


def test_imagenet_suite_trains_through_the_torch_loader(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    for c, name in enumerate(["n01440764", "n01443537"]):
        for i, size in enumerate(SIZES):
            write_jpeg(root / "train" / name / f"img{i}.JPEG", size, seed=10 * c + i)
        write_jpeg(root / "val" / name / "val0.jpg", SIZES[c], seed=100 + c)
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
