"""Weights files in and out: read the formats ResNets are published in without running code from
them, load them into a registry model strictly, and write ours as safetensors.

Formats `read_weights` takes:

- **safetensors** (ours, written by `save_weights`, or anyone's): tensors and string metadata only.
- a **torch.save'd file** (`.pt`, `.pth`, `.th`), read with ``torch.load(weights_only=True)``: a
  plain state dict (torchvision's layout for the ImageNet nets); our own checkpoint (a dict with
  `version` and `model`, benchmark/training/checkpoint.py); or a dict with `state_dict`, as the CIFAR
  reproductions save theirs (akamaster's trainer: `{'epoch', 'state_dict', 'best_prec1'}`). A pickle
  that needs more than tensors and plain values is refused in one line: unpickling it would run code.

Layouts `load_weights` reads besides ours: keys under `module.` (a net saved inside
`nn.DataParallel`) and a classifier named `linear` (akamaster's; ours and torchvision's is `fc`).
Everything else must match the model: no key missing (BN's `num_batches_tracked` excepted: a
counter, not a weight, that older PyTorch did not save), none unexpected, every shape equal, and a
floating-point tensor wherever the model has one (any float precision; it is cast to the model's).

What the weights cannot tell (the input normalisation, the side option A pads its zeros on) is the
caller's to say (`benchmark.data.eval_sets`, `option_a_padding`); our files carry it in the model card
stored in the safetensors metadata, and the training set's mean image as a tensor beside the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from benchmark import WeightsError

# The training images' per-pixel mean (Section 4.2's "per-pixel mean subtracted"): float32
# (3, H, W) in 0-255 units; the net's input is x / 255 - mean_image / 255 for uint8 RGB x.
MEAN_IMAGE_KEY = "input.mean_image"
CARD_KEY = "model_card"  # safetensors metadata: the model card (results/weights.py) as JSON
FORMATS = ("safetensors", "checkpoint", "state_dict")
_SHOWN = 3  # keys named in a mismatch before "and N more"


@dataclass(frozen=True, eq=False)
class WeightsFile:
    """One weights file as read: the model's tensors, and what ours carry beside them."""

    path: Path
    format: str                        # one of FORMATS
    tensors: dict[str, torch.Tensor]   # keys as the file names them (see `load_weights` for layouts)
    mean_image: torch.Tensor | None    # MEAN_IMAGE_KEY's tensor, where the file has one
    card: dict[str, Any] | None        # the model card of our files
    sha256: str


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_weights(path: str | Path) -> WeightsFile:
    """The tensors of `path`, or a one-line `WeightsError` naming it and what is wrong."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file")
    if not path.is_file():
        raise WeightsError(f"{path}: a folder, not a weights file")
    if _looks_like_safetensors(path):
        return _read_safetensors(path)
    if path.suffix == ".safetensors":
        raise WeightsError(f"{path}: not a safetensors file (its header is not one; truncated or corrupt?)")
    return _read_torch_file(path)


def _looks_like_safetensors(path: Path) -> bool:
    """safetensors: an 8-byte little-endian header length, then the JSON header."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> WeightsFile:
    try:
        tensors = load_file(path, device="cpu")
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({_first_line(exc)}; truncated or corrupt?)") from None
    card = None
    if CARD_KEY in metadata:
        try:
            card = json.loads(metadata[CARD_KEY])
        except ValueError as exc:
            raise WeightsError(f"{path}: its {CARD_KEY} metadata is not JSON ({exc})") from None
    mean_image = tensors.pop(MEAN_IMAGE_KEY, None)
    return WeightsFile(path, "safetensors", tensors, mean_image, card if isinstance(card, dict) else None, sha256_of(path))


def _read_torch_file(path: Path) -> WeightsFile:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path}: refused: it holds more than tensors and plain values ({unpickling_refusal(exc)}), and "
                           "reading it would run code from the file; convert it to safetensors where it is trusted") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable weights file ({_first_line(exc) or 'empty'}; truncated or corrupt?)") from None
    mean_image = None
    if isinstance(payload, dict) and "version" in payload and "model" in payload:  # our checkpoint
        fmt, state, mean_image = "checkpoint", payload["model"], payload.get("input_mean_image")
    elif isinstance(payload, dict) and "state_dict" in payload:  # the CIFAR reproductions' .th files
        fmt, state = "state_dict", payload["state_dict"]
    else:
        fmt, state = "state_dict", payload
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict (a dict of tensors, or a dict "
                           "with 'state_dict' or 'model' holding one)")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor")
    return WeightsFile(path, fmt, dict(state), mean_image if isinstance(mean_image, torch.Tensor) else None,
                       None, sha256_of(path))


def save_weights(path: Path, tensors: dict[str, torch.Tensor], mean_image: torch.Tensor | None,
                 card: dict[str, Any] | None) -> Path:
    """Write `tensors` (and the mean image, and the card as metadata) as safetensors, atomically:
    a reader sees the old file or the new one, never half of one."""
    data = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    if mean_image is not None:
        data[MEAN_IMAGE_KEY] = mean_image.detach().to("cpu", torch.float32).contiguous()
    metadata = {CARD_KEY: json.dumps(card, sort_keys=True)} if card is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(data, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_weights(model: nn.Module, weights: WeightsFile, label: str) -> str:
    """Load `weights` into `model` strictly (see the module's docstring); `label` names the model in
    errors. Returns the layout read besides ours ("" when the keys were ours)."""
    expected = model.state_dict()
    tensors, layout = _adapt_layout(weights.tensors, expected)
    _check_keys(weights.path, label, tensors, expected)
    loaded = {}
    for key, target in expected.items():
        if key not in tensors:  # only num_batches_tracked gets here (_check_keys)
            loaded[key] = target
            continue
        tensor = tensors[key]
        if tuple(tensor.shape) != tuple(target.shape):
            raise WeightsError(f"{weights.path}: {key} has shape {_shape(tensor)} in the file, {_shape(target)} in {label}")
        if tensor.is_floating_point() != target.is_floating_point() or tensor.dtype == torch.bool:
            kind = "a floating-point tensor" if target.is_floating_point() else f"an integer tensor ({target.dtype})"
            raise WeightsError(f"{weights.path}: {key} is {tensor.dtype} in the file; {label} expects {kind}")
        loaded[key] = tensor.to(target.dtype)
    model.load_state_dict(loaded, strict=True)
    return layout


def _adapt_layout(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    notes = []
    if tensors and all(key.startswith("module.") for key in tensors):
        tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
        notes.append("module. prefix")
    if "fc.weight" in expected and "fc.weight" not in tensors and "linear.weight" in tensors:
        tensors = {("fc." + key.removeprefix("linear.")) if key.startswith("linear.") else key: value
                   for key, value in tensors.items()}
        notes.append("linear head")
    return tensors, ", ".join(notes)


def _check_keys(path: Path, label: str, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing = [key for key in expected if key not in tensors and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in tensors if key not in expected]
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"missing {_listed(missing, expected)}")
    if unexpected:
        parts.append(f"unexpected {_listed(unexpected, tensors)}")
    hint = ""
    if any(".downsample." in key for key in unexpected) and not any(".downsample." in key for key in expected):
        hint = "; the file has projection shortcuts (option B or C)"
    elif any(".downsample." in key for key in missing) and not any(".downsample." in key for key in tensors):
        hint = "; the file has no projection shortcuts (option A?)"
    raise WeightsError(f"{path}: does not fit {label}: {'; '.join(parts)}{hint}")


def _listed(keys: list[str], shapes: dict[str, torch.Tensor]) -> str:
    shown = ", ".join(f"{key} {_shape(shapes[key])}" for key in keys[:_SHOWN])
    return shown + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def _shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(str(size) for size in tensor.shape) + ")"


def unpickling_refusal(exc: pickle.UnpicklingError) -> str:
    """What a file that `torch.load(weights_only=True)` refused wanted, in our words ("a Python object
    (posix.system)"): torch's own message advises loading it with weights_only=False, the very code
    execution refused, so it is never shown. Shared by every reader of torch files."""
    found = re.search(r"GLOBAL (\S+)", str(exc))
    return f"a Python object ({found.group(1)})" if found else "Python objects"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
