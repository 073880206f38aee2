"""A completed trial's final weights, out of its checkpoint and into the results folder or an export.

When a trial completes, the fleet's recorder reads its last checkpoint (the in-process executor's
folder under `_state/checkpoints/`, or Ray's storage: a path or a bucket) and writes
`weights/<trial_id>.safetensors` with its card (`benchmark/results/weights.py`), so the net outlives the
machine-local `_state/`. `export` writes `model.safetensors` and `model.json` per completed trial from
those files, or from the checkpoint where a trial's weights were never kept (an older folder).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark import ResultsError
from benchmark.fleet.storage import DEFAULT_STORAGE, REDACTED, Storage, StorageError, open_storage, same_storage
from benchmark.models.weights import read_weights
from benchmark.results.tables import ResultsWriter, read_runs, read_trial_config
from benchmark.results.weights import keep_weights, kept_weights, model_card, write_model
from benchmark.training.checkpoint import PAYLOAD_FILE, CheckpointError, read_payload


def read_checkpoint(run: dict[str, Any], folder: Path, live: Storage | None = None) -> dict[str, Any]:
    """The payload of the checkpoint a runs-table row of `folder` names; a CheckpointError otherwise.
    Where it lies follows `storage`: "local" (the in-process executor's folder under `_state/checkpoints/`),
    the storage of the run going on (`live`, with its credentials), the results folder's own Ray storage
    (`DEFAULT_STORAGE`, relative to the folder, so a moved folder still finds it), or another path or
    URI (its credentials, never recorded, from the environment)."""
    location, storage = str(run.get("checkpoint") or ""), str(run.get("storage") or "local")
    if not location:
        raise CheckpointError(f"trial {run['trial_id']}: no checkpoint recorded")
    if storage == "local":
        recorded, own = Path(location), Path(folder) / "_state" / "checkpoints" / str(run["trial_id"])
        return read_payload(recorded if (recorded / PAYLOAD_FILE).is_file() or not own.is_dir() else own)
    if live is None and same_storage(storage, DEFAULT_STORAGE):
        return read_payload(Path(folder) / DEFAULT_STORAGE / location)
    if live is None and REDACTED in storage:
        raise CheckpointError(f"storage {storage}: its credentials are not recorded; give them through the "
                              "environment and name the storage without them")
    store = live or open_storage(storage)
    where = f"{storage}/{location}"
    try:
        with store.filesystem.open_input_stream(store.join(f"{location}/{PAYLOAD_FILE}")) as handle:
            data = handle.read()
    except OSError as exc:
        raise CheckpointError(f"{where}: cannot be read ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="final-weights-") as directory:
        (Path(directory) / PAYLOAD_FILE).write_bytes(data)
        return read_payload(Path(directory), where=where)


def _weights_of(payload: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    return payload["model"], payload.get("input_mean_image")


def keep_final_weights(writer: ResultsWriter, trial_id: str, out: Callable[[str], None],
                       live: Storage | None = None) -> Path | None:
    """Write a completed trial's final weights into its results folder, once; None when the trial is
    not completed, its weights are kept already, or its recorded checkpoint is not (yet) the final
    one. `live`: the running executor's checkpoint storage (`read_checkpoint`). A checkpoint that cannot be read, or weights that cannot be written, are said in one line,
    not raised: the trial completed, its tables are right, and `export` can try again later."""
    run = writer.runs.get(trial_id, {})
    if run.get("status") != "completed" or kept_weights(writer.folder, trial_id).exists():
        return None
    try:
        payload = read_checkpoint(run, writer.folder, live)
        if str(payload["step"]) != str(run.get("steps")):  # Ray hands over the final checkpoint after the row
            return None
        tensors, mean_image = _weights_of(payload)
        path = keep_weights(writer.folder, _as_text(run), writer.trial_config(trial_id), tensors, mean_image)
    except (CheckpointError, StorageError, OSError) as exc:  # the trial completed all the same
        out(f"{trial_id:<22} final weights not kept: {exc}")
        return None
    out(f"{trial_id:<22} final weights: {path}")
    return path


def _as_text(run: dict[str, Any]) -> dict[str, Any]:
    """A runs row as runs.csv holds it (the writer keeps typed values of the current run in memory)."""
    return {key: "" if value is None else str(value) for key, value in run.items()}


def export_trials(folder: Path, out_dir: Path, trial_id: str | None = None) -> list[Path]:
    """`<out_dir>/<trial_id>/model.safetensors` and `model.json` for each completed trial of the
    results folder (or the one named); every source is read before anything is written."""
    folder = Path(folder)
    runs = read_runs(folder / "runs.csv")
    if not runs:
        raise ResultsError(f"{folder}: no runs.csv with trials (expected a results folder, e.g. results/<suite>)")
    if trial_id is not None and trial_id not in runs:
        raise ResultsError(f"{folder}: no trial {trial_id!r}; trials: {', '.join(sorted(runs))}")
    chosen = [trial_id] if trial_id is not None else [t for t, run in runs.items() if run["status"] == "completed"]
    if not chosen:
        raise ResultsError(f"{folder}: no completed trial to export")
    sources = {}
    for name in chosen:
        run = runs[name]
        if run["status"] != "completed":
            raise ResultsError(f"{folder}: trial {name} is {run['status']}; only a completed trial has final weights")
        sources[name] = _final_weights(folder, run)
    written = []
    for name, (tensors, mean_image) in sources.items():
        card = model_card(runs[name], read_trial_config(folder, name), mean_image is not None)
        target = Path(out_dir) / name
        written += write_model(target / "model.safetensors", target / "model.json", tensors, mean_image, card)
    return written


def _final_weights(folder: Path, run: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    kept = kept_weights(folder, run["trial_id"])
    if kept.exists():
        weights = read_weights(kept)
        return weights.tensors, weights.mean_image
    try:
        payload = read_checkpoint(run, folder)
    except CheckpointError as exc:
        raise ResultsError(f"trial {run['trial_id']}: no {kept} and its checkpoint cannot be read ({exc})") from None
    if str(payload["step"]) != str(run.get("steps")):
        raise ResultsError(f"trial {run['trial_id']}: its checkpoint is of step {payload['step']}, its final row of "
                           f"step {run.get('steps')}; the final weights are gone")
    return _weights_of(payload)
