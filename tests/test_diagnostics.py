"""Degradation diagnostics on cases with a known answer (small batches: these run on a CPU)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from benchmark import ResultsError, WeightsError
from benchmark.__main__ import main
from benchmark.analysis.diagnostics import analyze, layer_responses, synthetic_probe
from benchmark.models import build_model
from benchmark.models.weights import save_weights


@pytest.fixture(scope="module")
def depth56() -> tuple[pd.DataFrame, pd.DataFrame]:
    return analyze(["plain56", "resnet56"], batch_size=8, seed=0)


def test_gradient_flow_at_init(depth56) -> None:
    """At initialisation (seed 0) neither net's gradients vanish; the plain net's explode towards the input.

    Measured: plain-56's first five convs have gradient norms about 4000x its last five, ResNet-56's
    about 10x; the plain net's early gradients exceed the residual net's by about 450x. The margins
    asserted here are an order of magnitude looser than that, so a seed or library change that keeps
    the physics keeps the test green. (This is BN's gradient explosion in deep plain nets at init,
    Yang et al., ICLR 2019; it agrees with the paper's Section 4.1: the plain nets' difficulty is
    "unlikely to be caused by vanishing gradients".)
    """
    gradients, _ = depth56
    plain = gradients[gradients["model"] == "plain56"]["value"].to_numpy()
    residual = gradients[gradients["model"] == "resnet56"]["value"].to_numpy()
    assert plain.size == residual.size == 55  # 1 + 6n 3x3 convs with n = 9; option A has no shortcut conv
    assert plain[:5].mean() / plain[-5:].mean() > 100
    assert residual[:5].mean() / residual[-5:].mean() < 50
    assert plain[:5].mean() > 10 * residual[:5].mean()
    # The last layers, next to the loss, see gradients of the same size in both nets.
    assert 0.2 < plain[-5:].mean() / residual[-5:].mean() < 5


def test_responses_at_init_have_unit_std(depth56) -> None:
    """With batch statistics every BN output has std ~ gamma = 1: the forward signal keeps its variance."""
    _, responses = depth56
    assert len(responses) == 110
    assert responses["value"].between(0.98, 1.02).all()
    assert list(responses["layer"][:3]) == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]  # keyed by the 3x3 conv


def test_responses_follow_each_3x3_conv_to_its_bn() -> None:
    """Give every BN a distinct gamma: each 3x3 conv must report its own BN's gamma, and the BNs of
    option-B projection shortcuts (after 1x1 convs) must not appear."""
    torch.manual_seed(0)
    model = build_model("resnet20", shortcut="B")
    gammas = {}
    for index, (name, module) in enumerate(m for m in model.named_modules() if isinstance(m[1], nn.BatchNorm2d)):
        gammas[name] = 0.5 + 0.1 * index
        nn.init.constant_(module.weight, gammas[name])
    probe = synthetic_probe((3, 32, 32), 10, batch_size=8, seed=1)
    responses = layer_responses(model, probe, batch_statistics=True)
    assert len(responses) == 19  # the 3x3 convs of a 20-layer net
    for conv, value in responses:
        bn = "bn1" if conv == "conv1" else conv.replace(".conv", ".bn")
        assert value == pytest.approx(gammas[bn], rel=0.01), conv
    assert not any("downsample" in conv for conv, _ in responses)


def test_checkpoint_is_loaded(tmp_path: Path) -> None:
    """A checkpoint whose BNs have gamma = 0: in eval mode every response is a constant (beta), std 0."""
    model = build_model("resnet20")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.zeros_(module.weight)
            nn.init.constant_(module.bias, 0.3)
    path = tmp_path / "trained.pt"
    torch.save({"model": model.state_dict(), "step": 7}, path)
    gradients, responses = analyze(["resnet20"], [path], batch_size=4, seed=0)
    assert list(dict.fromkeys(responses["checkpoint"])) == ["init", "step 7"]
    trained = responses[responses["checkpoint"] == "step 7"]
    assert len(trained) == 19 and trained["value"].abs().max() < 1e-6 and set(trained["step"]) == {7}
    assert responses[responses["checkpoint"] == "init"]["value"].between(0.98, 1.02).all()
    relabelled, _ = analyze(["resnet20"], [path], steps=[64000], batch_size=4, seed=0)
    assert "step 64000" in set(relabelled["checkpoint"])


def test_a_results_folder_s_kept_weights_are_a_trained_state(tmp_path: Path) -> None:
    """The final weights a results folder keeps (safetensors, mean image and card beside the tensors)
    load like a checkpoint, labelled with the iterations their card gives; a net they do not fit
    is refused in one line naming the file."""
    model = build_model("resnet20")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.zeros_(module.weight)
    kept = save_weights(tmp_path / "weights" / "resnet20-A-s0.safetensors", model.state_dict(),
                        mean_image=torch.full((3, 32, 32), 120.0), card={"iterations": 2000})
    _, responses = analyze(["resnet20"], [kept], batch_size=4, seed=0)
    trained = responses[responses["checkpoint"] == "step 2000"]
    assert len(trained) == 19 and trained["value"].abs().max() < 1e-6
    with pytest.raises(WeightsError, match="resnet20-A-s0.safetensors"):
        analyze(["resnet56"], [kept], batch_size=2)


def test_bad_checkpoints(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"state": {}}, bad)
    with pytest.raises(ResultsError, match="bad.pt: expected a dict with key 'model'"):
        analyze(["resnet20"], [bad], batch_size=2)
    wrong = tmp_path / "wrong.pt"
    torch.save({"model": build_model("plain20").state_dict()}, wrong)
    with pytest.raises(ResultsError, match="wrong.pt: does not fit the model"):
        analyze(["resnet56"], [wrong], batch_size=2)
    with pytest.raises(ResultsError, match="2 checkpoints for 1 models"):
        analyze(["resnet20"], [bad, wrong], batch_size=2)
    with pytest.raises(ResultsError, match="does not exist"):
        analyze(["resnet20"], [tmp_path / "missing.pt"], batch_size=2)


class _RunsCode:
    def __reduce__(self):  # what unpickling would call
        return (print, ("this must never run",))


def test_a_crafted_checkpoint_is_refused_without_running_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crafted = tmp_path / "crafted.pt"
    torch.save({"model": _RunsCode()}, crafted)
    with pytest.raises(ResultsError, match="crafted.pt: not a readable torch.save file of tensors") as raised:
        analyze(["resnet20"], [crafted], batch_size=2)
    assert "this must never run" not in capsys.readouterr().out
    # our line, naming what the file wanted, never torch's advice to load it with weights_only=False
    assert "a Python object (print)" in str(raised.value) and "weights_only" not in str(raised.value)


def test_analyze_cli_writes_what_the_report_reads(tmp_path: Path) -> None:
    out = tmp_path / "results" / "suite" / "analysis"
    assert main(["analyze", "--models", "plain20", "resnet20", "--batch-size", "4", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["gradient_norms.csv", "gradient_norms.png", "gradient_norms.svg", "layer_responses.csv",
                     "layer_responses.png", "layer_responses.svg"]
    frame = pd.read_csv(out / "gradient_norms.csv")
    assert list(frame.columns) == ["layer_index", "layer", "model", "kind", "depth", "checkpoint", "step", "value"]
    assert frame.groupby("model").size().to_dict() == {"plain20": 19, "resnet20": 19}
    assert main(["analyze", "--models", "resnet20", "--checkpoint", str(tmp_path / "none.pt"),
                 "--out", str(out)]) == 2


def test_real_image_probe_is_preprocessed_like_training() -> None:
    from benchmark.analysis.diagnostics import cifar_probe
    from benchmark.data import load_cifar10

    probe = cifar_probe("synthetic", batch_size=16, seed=3)
    data = load_cifar10("synthetic")
    assert probe.x.shape == (16, 3, 32, 32) and probe.x.dtype == torch.float32
    # true labels of test images, and inputs centred by the training mean image (Section 4.2)
    assert set(probe.y.tolist()) <= set(data.y_eval.tolist())
    assert abs(float(probe.x.mean())) < 0.1
    assert torch.equal(probe.y, cifar_probe("synthetic", batch_size=16, seed=3).y)  # seeded
