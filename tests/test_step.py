"""TrainStep and evaluate on tiny CPU nets: learning, exact metrics, layouts, compile, NaN, errors."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch
import torch.nn.functional as F
from step_support import Overflow, cpu_grad_scaler, fake_cuda_graph_mode
from torch import nn

from benchmark import BenchmarkError
from benchmark.training.step import TrainStep, evaluate

CPU = torch.device("cpu")


def tiny_convnet(num_classes: int = 4) -> nn.Module:
    """Conv + BN + ReLU + pool + linear: the op types of the paper's nets, at toy size."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def learnable_batch(n: int = 64, num_classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is the brightest of the first `num_classes` pixel-wise colour patterns."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.5
    x[:, 0] += y.view(n, 1, 1).float()  # the red channel's mean encodes the label
    return x, y


def sgd(model: nn.Module, lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def test_loss_goes_down_on_a_learnable_problem() -> None:
    model = tiny_convnet()
    step = TrainStep(model, sgd(model), CPU)
    x, y = learnable_batch()
    step.step(x, y)
    first = step.pop_metrics()
    for _ in range(60):
        step.step(x, y)
    step.pop_metrics()
    step.step(x, y)
    last = step.pop_metrics()
    assert last["train_loss"] < 0.5 * first["train_loss"]
    assert last["train_error"] < first["train_error"]


def test_metrics_match_a_naive_reference() -> None:
    model = tiny_convnet()
    reference = copy.deepcopy(model)
    x, y = learnable_batch(32)
    step = TrainStep(model, sgd(model, lr=0.0), CPU)  # lr 0: both steps see the same weights
    step.step(x[:16], y[:16])
    step.step(x[16:], y[16:])
    metrics = step.pop_metrics()

    reference.train()
    losses, wrong = [], 0
    for xb, yb in ((x[:16], y[:16]), (x[16:], y[16:])):
        logits = reference(xb)
        losses += [F.cross_entropy(logits[i : i + 1], yb[i : i + 1]).item() for i in range(16)]
        wrong += sum(int(logits[i].argmax()) != int(yb[i]) for i in range(16))
    assert metrics["samples"] == 32
    assert metrics["train_loss"] == pytest.approx(sum(losses) / 32, rel=1e-5)
    assert metrics["train_error"] == pytest.approx(wrong / 32)
    # popped metrics reset
    assert step.pop_metrics()["samples"] == 0


def test_step_updates_weights_and_uses_caller_lr() -> None:
    model = tiny_convnet()
    optimizer = sgd(model)
    step = TrainStep(model, optimizer, CPU)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    before = [p.detach().clone() for p in model.parameters()]
    step.step(*learnable_batch())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for group in optimizer.param_groups:
        group["lr"] = 0.05
    step.step(*learnable_batch())
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def one_step_loss(**options: object) -> tuple[float, list[torch.Tensor]]:
    model = tiny_convnet()
    step = TrainStep(model, sgd(model), CPU, **options)
    x, y = learnable_batch()
    step.step(x, y)
    return step.pop_metrics()["train_loss"], [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_step_never_waits_for_the_device(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    # The module's rule: nothing in TrainStep.step reads a tensor on the host. Every Tensor method
    # that would (and so would wait for a GPU) raises while the steps run; pop_metrics may read.
    model = tiny_convnet()
    step = TrainStep(model, sgd(model), CPU, precision=precision, channels_last=True)
    x, y = learnable_batch()

    def host_read(name: str):  # noqa: ANN202
        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"TrainStep.step read a tensor on the host: Tensor.{name}")
        return refuse

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_read(name))
    for _ in range(3):
        step.step(x, y)
    monkeypatch.undo()
    metrics = step.pop_metrics()
    assert metrics["samples"] == 3 * len(y) and math.isfinite(metrics["train_loss"])


def test_channels_last_matches_eager() -> None:
    loss, params = one_step_loss()
    loss_cl, params_cl = one_step_loss(channels_last=True)
    assert loss_cl == pytest.approx(loss, rel=1e-5)
    for a, b in zip(params, params_cl):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compile_and_channels_last_match_eager() -> None:
    loss, params = one_step_loss()
    started = time.perf_counter()
    loss_c, params_c = one_step_loss(channels_last=True, compile=True)
    print(f"compile of a tiny net: {time.perf_counter() - started:.1f} s")
    assert loss_c == pytest.approx(loss, rel=1e-4)
    for a, b in zip(params, params_c):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_compiled_step_marks_weights_and_bn_statistics_static() -> None:
    # The precondition for CUDA graphs on a GPU (compile mode "reduce-overhead"), checkable here:
    # BN's running statistics are updated in place every training step, and cudagraph trees only
    # capture a graph whose mutated inputs are static (parameters, buffers); a mutated non-static
    # input makes inductor skip CUDA graphs ("skipping cudagraphs due to mutated inputs", as in
    # pytorch/pytorch#139207). Passing the module into the compiled function (TrainStep) must
    # therefore leave every parameter and buffer marked static by Dynamo.
    from benchmark.models import build_model

    model = build_model("resnet20")
    step = TrainStep(model, sgd(model), CPU, compile=True)
    step.step(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert any("running_mean" in name for name in tensors)
    not_static = [n for n, t in tensors.items() if getattr(t, "_dynamo_static_input_type", None) is None]
    assert not_static == []


def test_bf16_on_cpu_is_close_to_fp32() -> None:
    loss, _ = one_step_loss()
    loss_bf16, _ = one_step_loss(precision="bf16")
    assert loss_bf16 == pytest.approx(loss, rel=5e-2)


def test_nan_input_gives_nan_train_loss() -> None:
    model = tiny_convnet()
    step = TrainStep(model, sgd(model), CPU)
    x, y = learnable_batch()
    x[0, 0, 0, 0] = float("nan")
    step.step(x, y)  # no exception: divergence is reported, not raised
    assert math.isnan(step.pop_metrics()["train_loss"])


def test_fp16_on_cpu_is_a_clear_error() -> None:
    model = tiny_convnet()
    with pytest.raises(BenchmarkError, match="fp16.*CUDA"):
        TrainStep(model, sgd(model), CPU, precision="fp16")
    with pytest.raises(BenchmarkError, match="fp16.*CUDA"):
        evaluate(model, [learnable_batch()], CPU, precision="fp16")


def test_unknown_precision_is_a_clear_error() -> None:
    model = tiny_convnet()
    with pytest.raises(BenchmarkError, match="precision 'fp8'"):
        TrainStep(model, sgd(model), CPU, precision="fp8")


def test_evaluate_matches_a_naive_reference_and_restores_train_mode() -> None:
    model = tiny_convnet(num_classes=10)
    model.train()
    x, y = learnable_batch(40, num_classes=10)
    batches = [(x[:25], y[:25]), (x[25:], y[25:])]
    metrics = evaluate(model, batches, CPU, channels_last=True)
    assert model.training

    model.eval()
    with torch.no_grad():
        logits = model(x)
    top5 = logits.topk(5, dim=1).indices
    top1_wrong = sum(int(top5[i, 0]) != int(y[i]) for i in range(40))
    top5_wrong = sum(int(y[i]) not in top5[i].tolist() for i in range(40))
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert metrics["top1_error"] == pytest.approx(top1_wrong / 40)
    assert metrics["top5_error"] == pytest.approx(top5_wrong / 40)
    assert 0.0 <= metrics["top1_error"] <= 1.0


def test_evaluate_with_fewer_than_five_classes() -> None:
    model = tiny_convnet(num_classes=4)
    metrics = evaluate(model, [learnable_batch(8)], CPU)
    assert metrics["top5_error"] == 0.0


def test_evaluate_empty_loader_is_a_clear_error() -> None:
    with pytest.raises(BenchmarkError, match="no batches"):
        evaluate(tiny_convnet(), [], CPU)


def test_evaluate_averages_the_softmax_over_crops() -> None:
    # Section 3.4's 10-crop testing: (B, V, C, H, W) batches score each image by its mean softmax.
    from benchmark.data.imagenet import ten_crop_predict

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6))
    crops = torch.randn(5, 10, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3, 4])
    result = evaluate(model, [(crops, labels)], "cpu")
    with torch.no_grad():
        probabilities = ten_crop_predict(model.eval(), crops)
    assert result["loss"] == pytest.approx(float(-probabilities[torch.arange(5), labels].log().mean()), rel=1e-5)
    assert result["top1_error"] == pytest.approx(float((probabilities.argmax(1) != labels).float().mean()))


# ------------------------------------------------------------------ non-finite steps and fp16


def test_an_overflowing_step_is_counted_and_skipped_by_the_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 14.2: one overflowing fp16 step made the interval's loss NaN and ended the trial,
    # although GradScaler skipped that step. It is counted on the device instead.
    from benchmark.training.step import state_is_finite

    cpu_grad_scaler(monkeypatch)
    model = Overflow({1}).attach(tiny_convnet())
    step = TrainStep(model, sgd(model), CPU)
    x, y = learnable_batch()
    step.step(x, y)
    before = [p.detach().clone() for p in model.parameters()]
    step.step(x, y)  # overflows: the scaler skips the update and halves its scale
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    step.step(x, y)
    step.step(x, y)
    metrics = step.pop_metrics()
    assert metrics["steps"] == 4 and metrics["nonfinite_steps"] == 1
    assert metrics["samples"] == 4 * len(y) and metrics["loss_samples"] == 3 * len(y)
    assert math.isfinite(metrics["train_loss"]) and state_is_finite(model)
    assert step.scaler_state_dict()["scale"] == 2.0**15  # 2**16 halved once


def test_without_a_scaler_an_overflowing_step_poisons_the_weights() -> None:
    # fp32/bf16 have no scaler: the NaN gradient reaches the weights, and training cannot recover.
    from benchmark.training.step import state_is_finite

    model = Overflow({1}).attach(tiny_convnet())
    step = TrainStep(model, sgd(model), CPU)
    assert step.scaler_state_dict() is None
    for _ in range(3):
        step.step(*learnable_batch())
    assert step.pop_metrics()["nonfinite_steps"] >= 1
    assert not state_is_finite(model)


def test_the_grad_scaler_state_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_grad_scaler(monkeypatch)
    model = Overflow({0}).attach(tiny_convnet())
    step = TrainStep(model, sgd(model), CPU)
    step.step(*learnable_batch())
    state = step.scaler_state_dict()
    assert state is not None and all(isinstance(v, (int, float)) for v in state.values())  # plain: weights_only loads it
    fresh = TrainStep(tiny_convnet(), sgd(model), CPU)
    fresh.load_scaler_state_dict(state)
    assert fresh.scaler_state_dict() == state


# ------------------------------------------------------------------ CUDA graphs, checked


@pytest.mark.parametrize(("skips", "before", "after", "steps", "problem"), [
    (0, [0, 0, 0], [5, 5, 5], 5, None),                              # captured, BN advanced every step
    (0, [], [], 5, None),                                            # a net without BN
    (1, [0, 0], [5, 5], 5, "inductor skipped 1 CUDA graph"),          # a graph silently not captured
    (0, [10, 10, 10], [15, 10, 15], 5, "advanced by 0 instead of 5 in 1 of 3 layers"),  # a copy was updated
    (0, [0, 0], [4, 4], 5, "advanced by 4 instead of 5 in 2 of 2"),
])
def test_cuda_graph_verdict_from_recorded_counters(skips: int, before: list[int], after: list[int],
                                                    steps: int, problem: str | None) -> None:
    from benchmark.training.step import cuda_graph_problem

    found = cuda_graph_problem(skips, before, after, steps)
    assert found is None if problem is None else problem in found


@pytest.mark.parametrize(("skips", "outcome", "modes"), [
    ([0], "captured", ["reduce-overhead"]),
    ([0, 2], "fallback", ["reduce-overhead", None]),
])
def test_verify_cuda_graphs_falls_back_to_the_plain_compiled_step(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, skips: list[int], outcome: str, modes: list
) -> None:
    compiled_modes = fake_cuda_graph_mode(monkeypatch, skips)
    model = tiny_convnet()
    step = TrainStep(model, sgd(model), CPU, compile=True)
    assert step.cuda_graphs == "unchecked" and step.verify_cuda_graphs() == "unchecked"  # no step yet
    for _ in range(3):
        step.step(*learnable_batch())
    assert step.verify_cuda_graphs() == outcome == step.cuda_graphs
    assert compiled_modes == modes
    assert ("CUDA graphs off" in caplog.text) == (outcome == "fallback")
    step.step(*learnable_batch())  # training goes on after a fallback
    assert step.pop_metrics()["steps"] == 4
    assert step.verify_cuda_graphs() == outcome  # checked once


@pytest.mark.slow
def test_a_real_cuda_graph_skip_on_the_cpu_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inductor declines CUDA graphs for CPU tensors and counts it as a skip: the same signal a GPU
    # trial gets when a graph is skipped, here through a real compile.
    from benchmark.training import step as step_module

    monkeypatch.setattr(step_module, "compile_mode", lambda device: "reduce-overhead")
    model = tiny_convnet()
    step = TrainStep(model, sgd(model), CPU, compile=True)
    for _ in range(3):
        step.step(*learnable_batch())
    assert step.verify_cuda_graphs() == "fallback"
    step.step(*learnable_batch())
    metrics = step.pop_metrics()
    assert metrics["steps"] == 4 and math.isfinite(metrics["train_loss"])
