"""Score a net's weights on the paper's test protocol, beside the paper's number and the published
reproductions' for that net (`python -m benchmark evaluate`).

The weights may be ours (a kept or exported safetensors file, whose model card says how the net was
built, fed and evaluated, so no option is needed and the error its results folder records comes back
to the last digit on the same data and device) or anyone's (torchvision's ImageNet state dicts, the
CIFAR reproductions' checkpoints): then what the weights cannot tell is given as options, the
project's choices by default (`benchmark.data.eval_sets` for the normalisation, option A's padding
side in `benchmark.models.shortcuts`). The scoring is the trials' own (`benchmark.training.step.evaluate`
on `benchmark.data.eval_sets`' test sets); the references are the report's (`benchmark.analysis.reference`).

Every argument is checked, the file read and the net loaded before any data is: a mistake is one
line and nothing is scored or recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmark import BenchmarkError, DataError, ModelError, WeightsError
from benchmark.analysis.reference import reference_error, reproductions
from benchmark.analysis.reference.relatives import is_paper_model, own_number
from benchmark.data.eval_sets import DEFAULT_NORMALISATION, EvalSet, check_choice, cifar10_test, imagenet_val
from benchmark.models import build_model, model_info
from benchmark.models.weights import WeightsFile, load_weights, read_weights
from benchmark.results.provenance import code_version, provenance
from benchmark.results.tables import EVALUATION_COLUMNS
from benchmark.training.backends import numerics
from benchmark.training.step import autocast_dtype, evaluate

DEFAULT_BATCH_SIZE = {"cifar10": 1000, "imagenet": 50}  # images per batch (x10 crops for 10-crop testing)
BUILD_OPTIONS = ("shortcut", "option_a_padding", "bottleneck_stride")  # what --shortcut etc. may set


@dataclass(frozen=True)
class EvaluationRequest:
    """What `evaluate` was asked; None: the model card's value for our weights, else the project's."""

    model: str
    weights: Path
    dataset: str | None = None
    source: str = "auto"
    root: Path | None = None
    crops: int = 1
    device: str | None = None
    normalisation: str | None = None
    options: tuple[tuple[str, str], ...] = ()  # build options given (BUILD_OPTIONS)
    precision: str | None = None
    batch_size: int | None = None
    workers: int = 2


@dataclass(frozen=True)
class Reference:
    """A number to read the measured one against."""

    label: str
    top1_error: float | None
    top5_error: float | None
    protocol: str


@dataclass(frozen=True)
class Evaluation:
    row: dict[str, Any]            # the row of results/evaluations.csv
    references: list[Reference]
    notes: list[str]


def evaluate_weights(request: EvaluationRequest) -> Evaluation:
    """Score `request.weights`; a one-line BenchmarkError for any mistake, before any data is read (the
    data's own errors aside)."""
    info = model_info(request.model)  # an unknown name: one line with the close ones
    dataset = request.dataset or ("imagenet" if info.family == "imagenet" else "cifar10")
    if (dataset == "imagenet") != (info.family == "imagenet"):
        family = {"cifar": "a CIFAR-10", "imagenet": "an ImageNet"}
        raise ModelError(f"--model {request.model}: {family[info.family]} net ({'x'.join(map(str, info.input_size))} "
                         f"input, {info.num_classes} classes); --dataset {dataset} needs "
                         f"{family['imagenet' if dataset == 'imagenet' else 'cifar']} net")
    check_choice(request.normalisation or DEFAULT_NORMALISATION[dataset], request.crops)
    if dataset == "cifar10" and request.crops != 1:
        raise DataError(f"--crops {request.crops}: CIFAR-10 is tested on the single 32x32 image (Section 4.2); "
                        "10 crops are ImageNet's (Section 3.4)")
    if dataset == "imagenet" and request.root is None:
        raise DataError("--dataset imagenet needs --root DIR: an ImageFolder tree with train/ and val/")
    if request.batch_size is not None and request.batch_size < 1:
        raise BenchmarkError(f"--batch-size {request.batch_size}: expected a positive number of images")
    device = _device(request.device)
    weights = read_weights(request.weights)
    card = weights.card if weights.card and weights.card.get("model", {}).get("name") == request.model else {}
    options = _build_options(request, card)
    net = build_model(request.model, **options)
    layout = load_weights(net, weights, request.model + "".join(f" {key}={value}" for key, value in options.items()))
    recorded = card.get("evaluation", {})  # how the trial evaluated: the same numerics give the same digits
    normalisation = request.normalisation or card.get("input", {}).get("normalisation") or DEFAULT_NORMALISATION[dataset]
    precision = request.precision or recorded.get("precision") or "fp32"
    autocast_dtype(precision, device)  # an unknown precision, or fp16 off CUDA: one line, before the data
    batch_size = request.batch_size or recorded.get("batch_size") or DEFAULT_BATCH_SIZE[dataset]
    channels_last = bool(recorded.get("channels_last"))
    test_set = _test_set(request, dataset, normalisation, weights, batch_size, device)
    with numerics(device, tf32=bool(recorded.get("tf32")), deterministic=bool(recorded.get("deterministic"))):
        scored = evaluate(net.to(device), test_set.loader.epoch(0), device, precision=precision, channels_last=channels_last)
    resolved = net_options(request.model, options)
    row = {
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": request.model,
        "family": info.family, **resolved, "weights": str(request.weights), "weights_sha256": weights.sha256,
        "weights_format": weights.format, "weights_layout": layout, "suite": card.get("suite") or "",
        "trial_id": card.get("trial_id") or "", "dataset": dataset, "data_source": test_set.source,
        "data_fingerprint": test_set.fingerprint, "eval_split": test_set.split, "images": scored["samples"],
        "crops": test_set.crops, "normalisation": test_set.normalisation, "mean_image": test_set.mean_image,
        "precision": precision, "channels_last": channels_last, "batch_size": batch_size,
        "top1_error": 100 * scored["top1_error"], "top5_error": 100 * scored["top5_error"], "loss": scored["loss"],
        **_where(device),
    }
    return Evaluation(row, references(request.model, dataset, resolved["shortcut"], resolved["preact"], card),
                      _notes(card, test_set))


def _build_options(request: EvaluationRequest, card: dict[str, Any]) -> dict[str, Any]:
    """The model card's build options (our weights), with those the command gives in their place."""
    options = {**card.get("build_options", {}), **dict(request.options)}
    if options.get("shortcut", "A") != "A":
        options.pop("option_a_padding", None)  # a card's "after" says nothing once another option is asked
    return options


def _device(name: str | None) -> torch.device:
    try:
        device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise BenchmarkError(f"--device {name}: not a device (expected cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError(f"--device {name}: CUDA is not available on this machine")
    return device


def net_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options the net was built with as a row records them, the registry's defaults filled in."""
    info = model_info(model)
    shortcut = options.get("shortcut") or info.default_shortcut or ""
    padding = options.get("option_a_padding") or ("after" if shortcut == "A" else "")
    return {"shortcut": shortcut, "option_a_padding": padding, "preact": bool(options.get("preact", False)),
            "bottleneck_stride": options.get("bottleneck_stride") or ("1x1" if info.block == "bottleneck" else "")}


def _test_set(request: EvaluationRequest, dataset: str, normalisation: str, weights: WeightsFile, batch_size: int,
              device: torch.device) -> EvalSet:
    if dataset == "imagenet":
        return imagenet_val(request.root, normalisation, request.crops, batch_size, device, request.workers)
    mean = None
    if weights.mean_image is not None and normalisation == "mean-image":
        if tuple(weights.mean_image.shape) != (3, 32, 32):
            raise WeightsError(f"{weights.path}: its mean image has shape {tuple(weights.mean_image.shape)}, "
                               "expected (3, 32, 32)")
        mean = weights.mean_image.float().permute(1, 2, 0).contiguous().numpy()
    return cifar10_test(request.source, request.root, normalisation, mean, batch_size, device)


def _where(device: torch.device) -> dict[str, Any]:
    """Where and on what code the scoring ran: the trials' provenance columns."""
    code = code_version()
    recorded = {**provenance(device), "git_commit": code.git_commit, "code_version": code.code_version}
    return {column: recorded[column] for column in EVALUATION_COLUMNS if column in recorded}


def references(model: str, dataset: str, shortcut: str, preact: bool, card: dict[str, Any]) -> list[Reference]:
    """The error the weights' own results folder records, the paper's, and the published reproductions'."""
    found = []
    errors = card.get("errors", {})
    if errors.get("eval") is not None:
        found.append(Reference(f"recorded by trial {card.get('trial_id')} ({card.get('suite')})", errors["eval"],
                               errors.get("eval_top5"), f"{card.get('iterations')} iterations"))
    if dataset == "imagenet":
        for table in (2, 3):
            top1 = reference_error(model, "imagenet", shortcut or None, table=table)
            top5 = reference_error(model, "imagenet", shortcut or None, "top5_error", table=table)
            if top1 is not None or top5 is not None:
                found.append(Reference(f"He et al. 2015, Table {table}", top1, top5, "10-crop"))
    elif is_paper_model(model) and not preact:
        top1 = reference_error(model, "cifar10", shortcut or None, table=6)
        if top1 is not None:
            found.append(Reference("He et al. 2015, Table 6", top1, None, "single view"))
    elif (own := own_number(model, preact=preact)) is not None:
        found.append(Reference(own.label, own.value, None, own.statistic))
    published = reproductions()
    published = published[(published["model"] == model) & (published["dataset"] == dataset)]
    for source, rows in published.groupby("source", sort=False):
        values = dict(zip(rows["metric"], rows["value"]))
        found.append(Reference(str(source), values.get("top1_error"), values.get("top5_error"),
                               str(rows["test_protocol"].iloc[0])))
    return found


def _notes(card: dict[str, Any], test_set: EvalSet) -> list[str]:
    """What makes the measured number differ from the one recorded for the weights, if anything."""
    notes = []
    data = card.get("data", {})
    if data.get("eval_subset"):
        notes.append(f"the recorded error is on {data['eval_subset']} of the test images (data.eval_subset); "
                     f"these weights were scored on all {test_set.images}")
    if data.get("source") and data["source"] != test_set.source:
        notes.append(f"trained and recorded on {data['source']}, scored on {test_set.source}")
    return notes
