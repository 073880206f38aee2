"""`evaluate` on other people's layouts: a CIFAR reproduction's checkpoint made from a net of ours
(`module.` keys, a `linear` head, option A's zeros on both sides, ImageNet's normalisation) scores as
the original with the right options and visibly worse with wrong ones; torchvision's ResNet-18 state
dict scores on a generated ImageNet folder with 1 and 10 crops exactly as torchvision's own
transforms and model score it."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from benchmark.__main__ import main
from benchmark.data import build_loaders, load_cifar10
from benchmark.data.imagenet import MEAN, STD
from benchmark.models import build_model
from benchmark.training.step import TrainStep
from tests.test_data_imagenet import write_jpeg

pytestmark = pytest.mark.slow


def _evaluate(weights: Path, out: Path, *options: str, model: str = "resnet20") -> pd.Series:
    assert main(["evaluate", "--model", model, "--weights", str(weights), "--device", "cpu", "--out", str(out),
                 *options]) == 0
    return pd.read_csv(out).iloc[-1]


def trained_on_mean_std() -> dict[str, torch.Tensor]:
    """A ResNet-20 of ours trained as the CIFAR reproductions train theirs, on ImageNet's per-channel
    mean/std normalisation: 60 steps of 16 synthetic images, then BN's statistics estimated afresh over
    8 batches (after so few steps its running averages still lag the weights), well below chance error."""
    torch.manual_seed(0)
    data = load_cifar10("synthetic")
    train, _ = build_loaders(data, batch_size=16, mean=np.zeros((32, 32, 3), np.float32))  # yields x / 255
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    model = build_model("resnet20")
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4), "cpu")
    for x, y in islice(train.endless(), 60):
        step.step((x - mean) / std, y)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches below
    with torch.no_grad():
        for x, _ in islice(train.epoch(1), 8):
            model((x - mean) / std)
    return model.state_dict()


def _permuted(tensor: torch.Tensor, dim: int, where: list[int]) -> torch.Tensor:
    """Channel i of `tensor` along `dim` moved to position where[i]."""
    return torch.empty_like(tensor).index_copy_(dim, torch.tensor(where), tensor)


def _both_sides(width: int, carried: list[int]) -> list[int]:
    """Where each of our channels of a stage goes when option A pads its zeros on both sides: ours
    first carry the identity (`carried`: their positions in the stage before) and move to the middle,
    the zero-padded ones fill the two ends."""
    extra = width - len(carried)
    middle = [c + extra // 2 for c in carried]
    return middle + [c for c in range(width) if c not in set(middle)]


def reproduction_layout(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our ResNet-20 as akamaster's code holds the same function: every stage's channels permuted for
    zeros padded on both sides, keys under `module.`, the classifier named `linear`."""
    where = {1: list(range(16))}
    where[2] = _both_sides(32, where[1])
    where[3] = _both_sides(64, where[2])
    theirs = {}
    for key, tensor in ours.items():
        stage = int(key[5]) if key.startswith("layer") else 1
        if key == "fc.weight":
            tensor = _permuted(tensor, 1, where[3])
        elif ".conv" in key:  # out channels of its stage, in channels of the stage feeding it
            feeding = where[stage - 1] if key.endswith(".0.conv1.weight") and stage > 1 else where[stage]
            tensor = _permuted(_permuted(tensor, 0, where[stage]), 1, feeding)
        elif tensor.dim() == 1 and not key.startswith("fc."):  # a BN vector
            tensor = _permuted(tensor, 0, where[stage])
        theirs["module." + key.replace("fc.", "linear.")] = tensor
    return theirs


def test_a_cifar_reproduction_checkpoint_scores_as_the_original(tmp_path: Path, capsys) -> None:
    ours = trained_on_mean_std()
    original = tmp_path / "ours.pt"
    torch.save(ours, original)
    table = tmp_path / "evaluations.csv"
    scored = _evaluate(original, table, "--source", "synthetic", "--normalisation", "mean-std")
    assert scored["top1_error"] < 60  # a trained net, so that a wrong option shows
    checkpoint = tmp_path / "resnet20.th"
    torch.save({"epoch": 60, "state_dict": reproduction_layout(ours), "best_prec1": 80.0}, checkpoint)
    right = _evaluate(checkpoint, table, "--source", "synthetic", "--option-a-padding", "both",
                      "--normalisation", "mean-std")
    assert right["top1_error"] == scored["top1_error"] and right["loss"] == pytest.approx(scored["loss"], rel=1e-4)
    assert (right["weights_format"], right["weights_layout"], right["option_a_padding"]) == (
        "state_dict", "module. prefix, linear head", "both")
    # the wrong side, or the project's normalisation: a visibly wrong error, not a crash
    for wrong in (["--normalisation", "mean-std"], ["--option-a-padding", "both"]):
        assert _evaluate(checkpoint, table, "--source", "synthetic", *wrong)["top1_error"] >= scored["top1_error"] + 10
    capsys.readouterr()
    assert main(["evaluate", "--model", "resnet32", "--weights", str(checkpoint), "--out", str(table)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"{checkpoint}: does not fit resnet32: missing layer1.3.conv1.weight" in error
    assert len(pd.read_csv(table)) == 4  # nothing appended by the refusal


def _imagenet_tree(root: Path) -> Path:
    for c, name in enumerate(["n01440764", "n01443537"]):
        write_jpeg(root / "train" / name / "img0.JPEG", (300, 200), seed=c)
    for i, size in enumerate([(320, 240), (180, 260)]):  # one landscape, one portrait below 224
        write_jpeg(root / "val" / ["n01440764", "n01443537"][i] / f"val{i}.JPEG", size, seed=10 + i)
    return root


def _torchvision_scores(model: torch.nn.Module, root: Path, crops: int) -> tuple[float, float]:
    """Top-1 error (%) and mean loss as torchvision's transforms and model give them: the 224 centre
    crop of the image resized to 256, or TenCrop's four corners and centre and their flips, softmax averaged."""
    normalise = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    view = transforms.TenCrop(224) if crops == 10 else transforms.CenterCrop(224)
    wrong, losses = 0, []
    for label, name in enumerate(["n01440764", "n01443537"]):
        for path in sorted((root / "val" / name).iterdir()):
            image = transforms.Resize(256)(Image.open(path).convert("RGB"))
            views = [normalise(v) for v in (view(image) if crops == 10 else [view(image)])]
            with torch.inference_mode():
                probabilities = model(torch.stack(views)).softmax(-1).mean(0)
            wrong += int(probabilities.argmax() != label)
            losses.append(-float(probabilities[label].log()))
    return 100 * wrong / len(losses), sum(losses) / len(losses)


def test_a_torchvision_resnet18_state_dict_scores_with_1_and_10_crops(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    weights = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), weights)
    root = _imagenet_tree(tmp_path / "imagenet")
    table = tmp_path / "evaluations.csv"
    for crops in (1, 10):
        row = _evaluate(weights, table, "--shortcut", "B", "--root", str(root), "--crops", str(crops),
                        "--batch-size", "2", "--workers", "0", model="resnet18")
        top1, loss = _torchvision_scores(reference, root, crops)
        assert (row["dataset"], row["eval_split"], row["images"], row["crops"]) == ("imagenet", "val", 2, crops)
        assert (row["shortcut"], row["normalisation"], row["weights_format"]) == ("B", "mean-std", "state_dict")
        assert row["top1_error"] == top1 and row["loss"] == pytest.approx(loss, rel=1e-4)
