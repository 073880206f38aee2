"""Degradation diagnostics: gradient flow and layer responses, plain vs residual.

The paper argues (Section 4.1) that the degradation of deep plain nets is "unlikely to be caused by
vanishing gradients", since BN keeps forward signals at non-zero variance, and shows (Figure 7)
that residual nets' layer responses are generally smaller than plain nets': the residual
functions are closer to zero. These functions measure both on any registered model:

- ``gradient_norms``: the L2 norm of the gradient of every conv weight after one forward/backward
  in training mode, with cross-entropy on the given labels (random labels at initialisation).
- ``layer_responses``: the std of each 3×3 conv's output after its BN and before the addition or
  ReLU. For a trained checkpoint BN uses its running statistics (eval mode, as the paper measures
  trained nets). At initialisation running statistics are still (0, 1) and mean nothing, so BN
  uses the batch's statistics; every response is then about 1 (BN's gamma): the forward signals
  have "non-zero variances", as the paper verifies (Section 4.1). Figure 7's differences between
  plain and residual nets are a property of *trained* nets. The BN that follows a 3×3
  conv is found by dataflow, not by names: forward hooks record each 3×3 conv's output tensor and
  a BN whose input *is* that tensor is the conv's BN. In the post-activation blocks of the paper
  (BasicBlock, Bottleneck) a BN's output is "after BN, before addition/ReLU" by construction.

What to expect at initialisation (measured here: seed 0, batch 8, CPU): no vanishing gradients in
either net, as the paper argues. The plain-56's gradient norms instead *grow* towards the input,
about 4000x from its last conv to its first (the gradient explosion of deep BN nets at
initialisation: Yang et al., "A Mean Field Theory of Batch Normalization", ICLR 2019), while
ResNet-56's grow about 10x; the plain net's early-layer gradients exceed the residual net's by
about two orders of magnitude.

Checkpoints: a ``torch.save``'d dict whose key ``"model"`` holds the model's ``state_dict()``
(optionally ``"step"``: the training iteration), as ``benchmark.training.train`` writes them.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from benchmark import ResultsError
from benchmark.models import build_model, model_info
from benchmark.models.weights import load_weights, read_weights, unpickling_refusal
from benchmark.training.checkpoint import PAYLOAD_FILE

COLUMNS = ["layer_index", "layer", "model", "kind", "depth", "checkpoint", "step", "value"]


@dataclass(frozen=True)
class Probe:
    """A fixed batch to measure on: inputs (N, C, H, W) and integer labels (N,)."""

    x: torch.Tensor
    y: torch.Tensor


def synthetic_probe(input_size: tuple[int, int, int], num_classes: int, batch_size: int, seed: int) -> Probe:
    """Standard-normal images and uniform random labels from a seeded generator (no dataset needed).

    Normalised CIFAR-10 images have roughly zero mean and unit variance per channel, so N(0, 1)
    inputs exercise the same scale; the labels are random, as only the gradient's flow matters.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *input_size), generator=generator)
    y = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return Probe(x, y)


def cifar_probe(source: str, batch_size: int, seed: int, root: str | Path | None = None) -> Probe:
    """A seeded random batch of CIFAR-10 test images, preprocessed as the trials see them
    (Section 4.2: the training set's per-pixel mean subtracted), with their true labels. The
    paper's Figure 7 measures responses on real images, which trained nets respond to as trained."""
    from benchmark.data import load_cifar10
    from benchmark.data.preprocess import mean_chw01, mean_image, normalise

    data = load_cifar10(source=source, root=root)
    pick = torch.randperm(len(data.y_eval), generator=torch.Generator().manual_seed(seed))[:batch_size].numpy()
    images = torch.from_numpy(data.x_eval[pick]).permute(0, 3, 1, 2)
    return Probe(normalise(images, mean_chw01(mean_image(data.x_train))), torch.from_numpy(data.y_eval[pick]))


def gradient_norms(model: nn.Module, probe: Probe) -> list[tuple[str, float]]:
    """(conv name, ‖∂loss/∂W‖₂) for every conv layer, in the order the forward pass runs them."""
    order: list[str] = []
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, _inputs: tuple, _output: torch.Tensor) -> None:
        order.append(names[module])

    hooks = [module.register_forward_hook(record) for module in model.modules() if isinstance(module, nn.Conv2d)]
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        loss = nn.functional.cross_entropy(model(probe.x), probe.y)
    finally:
        for hook in hooks:
            hook.remove()
    loss.backward()
    modules = dict(model.named_modules())
    result = [(name, float(modules[name].weight.grad.norm())) for name in dict.fromkeys(order)]
    model.zero_grad(set_to_none=True)
    return result


def layer_responses(model: nn.Module, probe: Probe, batch_statistics: bool = False) -> list[tuple[str, float]]:
    """(3×3 conv name, std of its BN's output) in forward order: the paper's Figure 7 quantity.

    BN normalises with its running statistics (eval mode, as a trained net is tested), or with
    the batch's own (``batch_statistics``, training mode; the running statistics are then updated
    by this batch, as in any training-mode forward).
    """
    names = {module: name for name, module in model.named_modules()}
    conv_outputs: dict[int, tuple[str, torch.Tensor]] = {}
    responses: list[tuple[str, float]] = []

    def on_conv(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        # Keep the tensor itself (not just its id) alive, so an id cannot be reused mid-pass.
        conv_outputs[id(output)] = (names[module], output)

    def on_bn(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        found = conv_outputs.get(id(inputs[0]))
        if found is not None and found[1] is inputs[0]:
            responses.append((found[0], float(output.float().std())))

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            hooks.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_hook(on_bn))
    model.train(batch_statistics)
    try:
        with torch.no_grad():
            model(probe.x)
    finally:
        for hook in hooks:
            hook.remove()
    return responses


def load_checkpoint(model: nn.Module, path: Path) -> int | None:
    """Load ``path``'s ``"model"`` state dict into ``model``; return its ``"step"`` if it has one.

    ``path`` is a torch.save'd dict, a trial's checkpoint directory (``benchmark/training/checkpoint.py``),
    or the final weights a results folder keeps (``weights/<trial>.safetensors``, whose card gives the
    iterations): those stay with a results folder where checkpoints, machine-local, do not.
    Read with ``weights_only=True``: a checkpoint is input, and must not run code when loaded.
    """
    if path.is_dir():
        path = path / PAYLOAD_FILE
    if not path.is_file():
        raise ResultsError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        weights = read_weights(path)
        load_weights(model, weights, label=type(model).__name__)
        iterations = (weights.card or {}).get("iterations")
        return int(iterations) if iterations is not None else None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ResultsError(f"checkpoint {path}: not a readable torch.save file of tensors (it holds "
                           f"{unpickling_refusal(exc)}; loading it could run code)") from None
    except Exception as exc:  # torch raises many types for a corrupt or crafted file
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ResultsError(f"checkpoint {path}: not a readable torch.save file of tensors ({first_line})") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise ResultsError(f"checkpoint {path}: expected a dict with key 'model' holding a state_dict")
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0]
        raise ResultsError(f"checkpoint {path}: does not fit the model ({first_line})") from exc
    step = payload.get("step")
    return int(step) if step is not None else None


def _rows(values: list[tuple[str, float]], model: str, checkpoint: str, step: int | None) -> list[dict]:
    info = model_info(model)
    return [{"layer_index": index, "layer": layer, "model": model, "kind": info.kind, "depth": info.depth,
             "checkpoint": checkpoint, "step": step, "value": value}
            for index, (layer, value) in enumerate(values, start=1)]


def analyze(
    models: Sequence[str],
    checkpoints: Sequence[Path] = (),
    steps: Sequence[int] = (),
    batch_size: int = 32,
    seed: int = 0,
    source: str | None = None,
    root: str | Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gradient norms and layer responses of ``models`` at initialisation and at ``checkpoints``.

    Without checkpoints, each model is measured at initialisation (``torch.manual_seed(seed)``
    before building it). With checkpoints, ``checkpoints[i]`` is a trained state of ``models[i]``
    (so the lists have equal length; repeat a model name for several checkpoints of it), labelled
    ``steps[i]`` when given, else the checkpoint's ``"step"``. Every model is measured at
    initialisation as well. ``source`` (a CIFAR-10 source such as "auto" or "jpeg75") probes with
    real test images instead of synthetic ones. Returns (gradient norms, layer responses), tidy,
    columns ``COLUMNS``.
    """
    if checkpoints and len(checkpoints) != len(models):
        raise ResultsError(f"{len(checkpoints)} checkpoints for {len(models)} models: give one checkpoint "
                           "per model, in the same order (repeat a model for several checkpoints)")
    if steps and len(steps) != len(checkpoints):
        raise ResultsError(f"{len(steps)} steps for {len(checkpoints)} checkpoints: give one step per checkpoint")
    gradients: list[dict] = []
    responses: list[dict] = []
    states: list[tuple[str, Path | None, int | None]] = [(m, None, 0) for m in dict.fromkeys(models)]
    states += [(m, Path(c), steps[i] if steps else None) for i, (m, c) in enumerate(zip(models, checkpoints))]
    real = cifar_probe(source, batch_size, seed, root) if source is not None else None
    for model_name, checkpoint, step in states:
        info = model_info(model_name)
        torch.manual_seed(seed)  # the same initial weights for the same name and seed
        model = build_model(model_name)
        label = "init"
        if checkpoint is not None:
            stored = load_checkpoint(model, checkpoint)
            step = step if step is not None else stored
            label = f"step {step}" if step is not None else checkpoint.stem
        if real is not None and info.family != "cifar":
            raise ResultsError(f"--source probes with CIFAR-10 images; {model_name} is an {info.family} net")
        probe = real if real is not None else synthetic_probe(info.input_size, info.num_classes, batch_size, seed)
        # Responses first: the training-mode pass of gradient_norms updates BN's running statistics,
        # which the eval-mode responses read.
        responses += _rows(layer_responses(model, probe, batch_statistics=checkpoint is None),
                           model_name, label, step)
        gradients += _rows(gradient_norms(model, probe), model_name, label, step)
    return pd.DataFrame(gradients, columns=COLUMNS), pd.DataFrame(responses, columns=COLUMNS)


def write_analysis(gradients: pd.DataFrame, responses: pd.DataFrame, out: Path) -> list[Path]:
    """Write the CSVs (the names ``benchmark.results.read`` reads from ``results/<suite>/analysis/``);
    `analyze` draws their figures (``benchmark/report/cli.py``)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("gradient_norms.csv", gradients), ("layer_responses.csv", responses)):
        frame.to_csv(out / name, index=False)
        written.append(out / name)
    return written
