"""Weights in and out of a results folder, end to end on one tiny trained suite (ResNet-20, synthetic
CIFAR-10, 20 steps): a completed trial keeps its final weights and card, `export` hands them out (from
the kept file or from the checkpoint), they load with nothing but torch, safetensors and
`build_model`, `evaluate` gets the recorded test error back to the last digit, and the report lists
that evaluation. Other people's layouts (a CIFAR reproduction's, torchvision's): test_weights_published.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from benchmark.__main__ import main
from benchmark.data import load_cifar10
from benchmark.models import build_model
from benchmark.models.weights import CARD_KEY, sha256_of
from benchmark.report import evaluations
from benchmark.report.render import to_markdown
from benchmark.results.read import load_results
from benchmark.training.checkpoint import read_payload

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("weights")]  # one worker trains the suite once

SUITE = """
name: tiny_weights
data: {dataset: cifar10, source: synthetic}
loader: device
recipe: {name: cifar10_he2015, batch_size: 32, max_steps: 20, lr: 0.1}
grid: {model: [resnet20]}
seeds: [0]
resources: {cpu: 1}
eval_every: 20
eval_batch_size: 200
"""
TRIAL = "resnet20-A-s0"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weights")
    (root / "tiny.yaml").write_text(SUITE)
    assert main(["run", str(root / "tiny.yaml"), "--executor", "local", "--results", str(root / "results"), "--no-report"]) == 0
    return root / "results" / "tiny_weights"


@pytest.fixture(scope="module")
def exported(trained: Path) -> Path:
    out = trained.parent.parent / "export"
    assert main(["export", str(trained), "--out", str(out)]) == 0
    return out / TRIAL


def _run(folder: Path) -> pd.Series:
    return pd.read_csv(folder / "runs.csv").set_index("trial_id").loc[TRIAL]


def _evaluate(weights: Path, out: Path, *options: str) -> pd.Series:
    assert main(["evaluate", "--model", "resnet20", "--weights", str(weights), "--source", "synthetic",
                 "--device", "cpu", "--out", str(out), *options]) == 0
    return pd.read_csv(out).iloc[-1]


def test_a_completed_trial_keeps_its_final_weights_and_card(trained: Path) -> None:
    kept = trained / "weights" / f"{TRIAL}.safetensors"
    run = _run(trained)
    final = read_payload(trained / "_state" / "checkpoints" / TRIAL)["model"]
    tensors = load_file(kept)
    assert tensors.pop("input.mean_image").shape == (3, 32, 32)
    assert tensors.keys() == final.keys() and all(torch.equal(tensors[k], final[k]) for k in final)
    card = json.loads(kept.with_suffix(".json").read_text())
    assert card["model"] == {"name": "resnet20", "family": "cifar", "architecture": "resnet", "kind": "residual",
                             "depth": 20, "paper": "he2015"}
    assert card["build_options"] == {"shortcut": "A", "option_a_padding": "after"}
    assert card["input"]["normalisation"] == "mean-image" and card["input"]["mean_image"] == "input.mean_image"
    assert (card["recipe"]["name"], card["recipe"]["max_steps"], card["iterations"]) == ("cifar10_he2015", 20, 20)
    assert (card["data"]["source"], card["data"]["train_subset"], card["data"]["fingerprint"]) == (
        "synthetic", None, run["data_fingerprint"])
    assert (card["errors"]["train"], card["errors"]["eval"]) == (run["final_train_error"], run["final_eval_error"])
    assert card["code"]["code_version"] == run["code_version"] and card["hardware"]["device"] == run["device"]
    assert card["weights"] == {"file": kept.name, "bytes": kept.stat().st_size, "sha256": sha256_of(kept)}
    assert f'load_file("{kept.name}")' in card["load"] and "build_model('resnet20', shortcut='A'" in card["load"]
    with safe_open(kept, framework="pt") as handle:  # the card travels inside the file too
        assert json.loads(handle.metadata()[CARD_KEY]) == {k: v for k, v in card.items() if k != "weights"}
    assert not (trained / "weights" / ".gitignore").exists()  # 1 MB: committed with the tables


def test_an_export_loads_with_torch_safetensors_and_build_model_alone(trained: Path, exported: Path) -> None:
    card = json.loads((exported / "model.json").read_text())
    weights = load_file(exported / "model.safetensors")
    mean_image = weights.pop("input.mean_image")
    model = build_model(card["model"]["name"], **card["build_options"]).eval()
    model.load_state_dict(weights)
    data = load_cifar10("synthetic")  # the suite's source: its test images
    images = torch.from_numpy(data.x_eval).permute(0, 3, 1, 2).contiguous().float().div(255) - mean_image / 255
    labels = torch.from_numpy(data.y_eval)
    batch = card["evaluation"]["batch_size"]
    with torch.inference_mode():
        wrong = sum(int((model(images[i:i + batch]).argmax(1) != labels[i:i + batch]).sum())
                    for i in range(0, len(labels), batch))
    assert 100 * wrong / len(labels) == _run(trained)["final_eval_error"] == card["errors"]["eval"]


def test_evaluate_gets_the_recorded_error_back_and_the_report_lists_it(trained: Path, exported: Path, capsys) -> None:
    table = trained.parent / "evaluations.csv"  # beside the suites' folders, where the report looks
    row = _evaluate(exported / "model.safetensors", table)
    run = _run(trained)
    assert (row["top1_error"], row["top5_error"]) == (run["final_eval_error"], run["final_eval_top5_error"])
    assert row["loss"] == run["final_eval_loss"] and row["data_fingerprint"] == run["data_fingerprint"]
    assert (row["trial_id"], row["suite"], row["weights_format"], row["mean_image"]) == (TRIAL, "tiny_weights",
                                                                                          "safetensors", "weights")
    assert (row["shortcut"], row["option_a_padding"], row["normalisation"], row["crops"]) == ("A", "after", "mean-image", 1)
    assert row["weights_sha256"] == sha256_of(exported / "model.safetensors") and row["code_version"]
    printed = capsys.readouterr().out
    assert f"recorded by trial {TRIAL} (tiny_weights)" in printed and "He et al. 2015, Table 6" in printed
    assert "8.75" in printed and "akamaster/pytorch_resnet_cifar10" in printed and f"appended to {table}" in printed
    results = load_results(trained)
    assert list(results.evaluations["trial_id"]) == [TRIAL]
    text = to_markdown("report", evaluations.section(results))
    assert "## Evaluations of these nets" in text and f"| {TRIAL} |" in text and "| +0.00 |" in text


def test_export_works_from_the_checkpoint_where_no_weights_were_kept(trained: Path, exported: Path,
                                                                     tmp_path: Path, capsys) -> None:
    older = tmp_path / "older"
    shutil.copytree(trained, older, ignore=shutil.ignore_patterns("weights", "_state"))  # runs.csv names the checkpoint
    assert main(["export", str(older), "--trial", TRIAL, "--out", str(tmp_path / "out")]) == 0
    again = load_file(tmp_path / "out" / TRIAL / "model.safetensors")
    first = load_file(exported / "model.safetensors")
    assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first)
    capsys.readouterr()
    assert main(["export", str(older), "--trial", "resnet20-A-s9", "--out", str(tmp_path / "none")]) == 2
    assert "no trial 'resnet20-A-s9'; trials: resnet20-A-s0" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
