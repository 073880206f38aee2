"""Bad input to `evaluate`, `export` and the weights reader: one line naming the file or value, exit
status 2, nothing appended to evaluations.csv, and no code from a weights file ever run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from benchmark import WeightsError
from benchmark.__main__ import main
from benchmark.models import build_model
from benchmark.models.weights import load_weights, read_weights


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("resnet20").state_dict()


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], weights: Path, *extra: str, model: str = "resnet20") -> str:
    """Run `evaluate` expecting exit 2: returns the one line of stderr; nothing is appended."""
    out = tmp_path / "evaluations.csv"
    status = main(["evaluate", "--model", model, "--weights", str(weights), "--source", "synthetic",
                   "--device", "cpu", "--out", str(out), *extra])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not out.exists()
    return lines[0]


def test_a_missing_file(tmp_path: Path, capsys) -> None:
    line = _refused(tmp_path, capsys, tmp_path / "nowhere.safetensors")
    assert f"{tmp_path / 'nowhere.safetensors'}: no such weights file" in line


def test_truncated_files(tmp_path: Path, capsys) -> None:
    whole = tmp_path / "whole.safetensors"
    save_file(_state(), whole)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(whole.read_bytes()[:-1000])
    assert f"{cut}: not a readable safetensors file" in _refused(tmp_path, capsys, cut)
    pickled = tmp_path / "whole.pt"
    torch.save(_state(), pickled)
    half = tmp_path / "half.pt"
    half.write_bytes(pickled.read_bytes()[: pickled.stat().st_size // 2])
    assert f"{half}: not a readable weights file" in _refused(tmp_path, capsys, half)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert f"{empty}: not a readable weights file (empty" in _refused(tmp_path, capsys, empty)


class _RunsCode:
    """A pickle that runs a shell command when unpickled, as a crafted checkpoint would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "ran"
    crafted = tmp_path / "crafted.th"
    torch.save({"state_dict": _state(), "best_prec1": _RunsCode(marker)}, crafted)
    line = _refused(tmp_path, capsys, crafted)
    assert f"{crafted}: refused" in line and "run code" in line and "system" in line
    assert not marker.exists()


def test_a_safetensors_file_with_a_wrong_dtype_or_shape(tmp_path: Path, capsys) -> None:
    state = _state()
    wrong_dtype = tmp_path / "int.safetensors"
    save_file({**state, "conv1.weight": state["conv1.weight"].to(torch.int32)}, wrong_dtype)
    line = _refused(tmp_path, capsys, wrong_dtype)
    assert f"{wrong_dtype}: conv1.weight is torch.int32 in the file" in line and "floating-point" in line
    wrong_shape = tmp_path / "shape.safetensors"
    save_file({**state, "fc.weight": torch.zeros(5, 64), "fc.bias": torch.zeros(5)}, wrong_shape)
    assert f"{wrong_shape}: fc.weight has shape (5, 64) in the file, (10, 64) in resnet20" in _refused(tmp_path, capsys, wrong_shape)


def test_missing_and_unexpected_keys_are_named_with_their_shapes(tmp_path: Path, capsys) -> None:
    state = _state()
    torchvision_like = tmp_path / "b.safetensors"  # option B's projection where option A has none
    save_file({**state, "layer2.0.downsample.0.weight": torch.zeros(32, 16, 1, 1)}, torchvision_like)
    line = _refused(tmp_path, capsys, torchvision_like)
    assert "does not fit resnet20" in line and "unexpected layer2.0.downsample.0.weight (32, 16, 1, 1)" in line
    assert "projection shortcuts (option B or C)" in line
    short = tmp_path / "short.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("layer3.")}, short)
    line = _refused(tmp_path, capsys, short)
    assert "missing layer3.0.conv1.weight (64, 32, 3, 3)" in line and "more" in line
    # BN's counter may be absent (older PyTorch did not save it): the weights load
    without_counters = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    net = build_model("resnet20")
    save_file(without_counters, tmp_path / "old.safetensors")
    assert load_weights(net, read_weights(tmp_path / "old.safetensors"), "resnet20") == ""


def test_bad_options_are_one_line(tmp_path: Path, capsys) -> None:
    good = tmp_path / "good.safetensors"
    save_file(_state(), good)
    assert "--crops 3: expected 1 (the centre crop) or 10" in _refused(tmp_path, capsys, good, "--crops", "3")
    assert "--crops 10: CIFAR-10 is tested on the single 32x32 image" in _refused(tmp_path, capsys, good, "--crops", "10")
    assert "unknown model 'resnet21'; did you mean" in _refused(tmp_path, capsys, good, model="resnet21")
    assert "--normalisation pixels: expected one of mean-image, mean-std" in _refused(
        tmp_path, capsys, good, "--normalisation", "pixels")
    assert "unknown option_a_padding 'left'" in _refused(tmp_path, capsys, good, "--option-a-padding", "left")
    assert "--dataset imagenet needs an ImageNet net" in _refused(tmp_path, capsys, good, "--dataset", "imagenet")
    assert "precision 'fp8': expected one of" in _refused(tmp_path, capsys, good, "--precision", "fp8")


def test_export_names_what_it_cannot_do(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "no runs.csv with trials" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_reading_states_the_format(tmp_path: Path) -> None:
    state = _state()
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}, "best_prec1": 90.0},
               tmp_path / "reproduction.th")
    weights = read_weights(tmp_path / "reproduction.th")
    assert weights.format == "state_dict" and weights.card is None and len(weights.sha256) == 64
    torch.save(["not", "a", "state", "dict"], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        read_weights(tmp_path / "list.pt")
