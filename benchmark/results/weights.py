"""A trained net's weights and its model card, as a results folder keeps them and `export` hands them out.

A completed trial's final weights go to `results/<suite>/weights/<trial_id>.safetensors`, its card to
`weights/<trial_id>.json` (the fleet writes them when the trial completes, benchmark/fleet/final_weights.py),
outside the ignored `_state/`, so a committed results folder carries its nets. A file larger than
`COMMIT_LIMIT_BYTES` (the ImageNet nets, ResNet-1202) is kept on disk but listed in `weights/.gitignore`.
`export` writes the same pair as `model.safetensors` and `model.json`.

The card (`model_card`) says what the weights cannot: how to build the net (`build_options`, with
option A's padding side), its input normalisation (the training images' mean image is in the
safetensors file, `benchmark.models.weights.MEAN_IMAGE_KEY`), the recipe and iterations, the data,
the final errors its results folder records and how they were evaluated, the code version and the
hardware, and a one-line loading snippet. The safetensors metadata holds the same card, so that
`evaluate` needs no options for our own weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from benchmark.data.eval_sets import DEFAULT_NORMALISATION
from benchmark.hardware import RUN_HARDWARE_COLUMNS
from benchmark.models import model_info
from benchmark.models.weights import MEAN_IMAGE_KEY, save_weights, sha256_of
from benchmark.results.tables import atomic_write_text
from benchmark.suite.recipes import RECIPE_COLUMNS

CARD_VERSION = 1
WEIGHTS_FOLDER = "weights"
# Above this a file stays out of git (GitHub warns at 50 MB): every CIFAR-10 net of the paper but
# ResNet-1202 (19.4M parameters, 78 MB) is below it, every ImageNet net above (ResNet-18: 47 MB).
COMMIT_LIMIT_BYTES = 20 * 2**20
SOFTWARE_COLUMNS = ("torch_version", "torchvision_version", "numpy_version", "cuda_version", "python_version")


def _value(value: Any) -> Any:
    """A runs-table cell as JSON: numbers as numbers, true/false as booleans, '' as null."""
    if not isinstance(value, str):
        return None if value is None or (isinstance(value, float) and value != value) else value
    if value == "":
        return None
    if value in ("True", "False", "true", "false"):
        return value.lower() == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def build_options(run: Mapping[str, Any]) -> dict[str, Any]:
    """`build_model(run["model"], **options)` builds the trial's net: its shortcut option (and option
    A's padding side, ours: after the identity's channels) and pre-activation, where it takes them."""
    taken = model_info(str(run["model"])).options
    options: dict[str, Any] = {}
    shortcut = _value(run.get("shortcut"))
    if shortcut and "shortcut" in taken:
        options["shortcut"] = shortcut
        if shortcut == "A" and "option_a_padding" in taken:
            options["option_a_padding"] = "after"
    if _value(run.get("preact")) and "preact" in taken:
        options["preact"] = True
    return options


def loading_snippet(file_name: str, model: str, options: Mapping[str, Any], has_mean_image: bool) -> str:
    """One line of Python that loads the net with nothing but safetensors and `build_model`."""
    arguments = "".join(f", {key}={value!r}" for key, value in options.items())
    head = f'from safetensors.torch import load_file; from benchmark.models import build_model; w = load_file("{file_name}"); '
    build = f"model = build_model({model!r}{arguments}).eval(); model.load_state_dict(w)"
    if has_mean_image:
        return head + f'mean_image = w.pop("{MEAN_IMAGE_KEY}"); ' + build + "  # input: x / 255 - mean_image / 255"
    return head + build + "  # input: (x / 255 - mean) / std per channel, ImageNet's"


def model_card(run: Mapping[str, Any], config: Mapping[str, Any] | None, has_mean_image: bool,
               file_name: str = "model.safetensors") -> dict[str, Any]:
    """The card of one trial from its runs-table row and its trials/<id>.json configuration."""
    model = str(run["model"])
    info = model_info(model)
    trial = (config or {}).get("trial", {})
    data = trial.get("data", {})
    options = build_options(run)
    dataset = str(run.get("dataset") or "cifar10")
    return {
        "card_version": CARD_VERSION,
        "trial_id": run["trial_id"],
        "suite": _value(run.get("suite")),
        "model": {"name": model, "family": info.family, "architecture": info.architecture, "kind": info.kind,
                  "depth": info.depth, "paper": info.paper},
        "build_options": options,
        "shortcut": {"option": options.get("shortcut"), "option_a_padding": options.get("option_a_padding")},
        "input": {"size": list(info.input_size), "normalisation": DEFAULT_NORMALISATION[dataset],
                  "mean_image": MEAN_IMAGE_KEY if has_mean_image else None},
        "recipe": {"name": _value(run.get("recipe")),
                   **{column.removeprefix("recipe_"): _value(run.get(column)) for column in RECIPE_COLUMNS
                      if column != "recipe"}},
        "iterations": _value(run.get("steps")),
        "data": {"dataset": dataset, "source": _value(run.get("data_source")), "split": _value(run.get("split")),
                 "fingerprint": _value(run.get("data_fingerprint")), "train_subset": data.get("train_subset"),
                 "eval_subset": data.get("eval_subset")},
        "evaluation": {"split": _value(run.get("eval_split")), "precision": _value(run.get("precision")),
                       "channels_last": bool(_value(run.get("channels_last"))),
                       "batch_size": trial.get("eval_batch_size"), "ten_crop": bool(_value(run.get("eval_ten_crop"))),
                       "tf32": bool(_value(run.get("tf32"))), "deterministic": bool(_value(run.get("deterministic")))},
        "errors": {"train": _value(run.get("final_train_error")), "eval": _value(run.get("final_eval_error")),
                   "eval_top5": _value(run.get("final_eval_top5_error")), "eval_loss": _value(run.get("final_eval_loss"))},
        "code": {"git_commit": _text(run.get("git_commit")), "code_version": _text(run.get("code_version"))},
        "hardware": {column: _value(run.get(column)) for column in ("device", *RUN_HARDWARE_COLUMNS, "node", "hostname")},
        "software": {column: _text(run.get(column)) for column in SOFTWARE_COLUMNS},  # "13.0" is a version, not a number
        "finished_at": _value(run.get("finished_at")),
        "load": loading_snippet(file_name, model, options, has_mean_image),
    }


def write_model(weights_path: Path, card_path: Path, tensors: dict[str, torch.Tensor],
                mean_image: torch.Tensor | None, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write the safetensors file (the card in its metadata), then the card as JSON with the file's
    name, size and sha256; each written atomically."""
    save_weights(weights_path, tensors, mean_image, card)
    listed = {**card, "weights": {"file": weights_path.name, "bytes": weights_path.stat().st_size,
                                  "sha256": sha256_of(weights_path)}}
    atomic_write_text(card_path, json.dumps(listed, indent=2) + "\n")
    return weights_path, card_path


def kept_weights(folder: Path, trial_id: str) -> Path:
    """Where a results folder keeps a completed trial's final weights."""
    return Path(folder) / WEIGHTS_FOLDER / f"{trial_id}.safetensors"


def keep_weights(folder: Path, run: Mapping[str, Any], config: Mapping[str, Any] | None,
                 tensors: dict[str, torch.Tensor], mean_image: torch.Tensor | None,
                 limit_bytes: int = COMMIT_LIMIT_BYTES) -> Path:
    """Write a completed trial's weights and card into the results folder; a file above
    `limit_bytes` is listed in weights/.gitignore (kept here, left out of git)."""
    path = kept_weights(folder, str(run["trial_id"]))
    card = model_card(run, config, mean_image is not None, file_name=path.name)
    write_model(path, path.with_suffix(".json"), tensors, mean_image, card)
    if path.stat().st_size > limit_bytes:
        ignore = path.parent / ".gitignore"
        listed = ignore.read_text().splitlines() if ignore.exists() else [
            f"# weights files over {limit_bytes // 2**20} MB stay out of git (benchmark/results/weights.py)"]
        if path.name not in listed:
            atomic_write_text(ignore, "\n".join([*listed, path.name]) + "\n")
    return path
