"""Read and validate a results folder (the schema is docs/interfaces.md, "Results").

A report must never be silently wrong, so every table is checked before a number leaves this
module: a missing folder or file, a table with missing columns, a line with the wrong number of
fields, text in a numeric column, an unknown status or kind, an error outside 0-100, a duplicate
trial or a duplicate (trial_id, step) row each raise one ``ResultsError`` naming the file.
Missing *values* are allowed (a pending trial has no final error; a diverged one may log NaN).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark import ResultsError
from benchmark.results.tables import STATUSES

# The columns a report reads. docs/interfaces.md lists more (recipe and provenance); a report must
# not reject a results folder over a column it never uses, so only these are required.
RUNS_COLUMNS = (
    "trial_id", "suite", "model", "kind", "depth", "shortcut", "preact", "seed", "status",
    "final_train_error", "final_eval_error", "final_eval_top5_error", "eval_split", "images_per_s",
    "dataset", "data_source", "device", "error",
)
# Numeric columns of the schema, checked wherever present.
RUNS_NUMERIC = (
    "depth", "seed", "steps", "eval_every", "final_train_error", "final_eval_error", "final_eval_top5_error",
    "final_eval_loss", "images_per_s", "wall_s", "recipe_lr", "recipe_momentum",
    "recipe_weight_decay", "recipe_batch_size", "recipe_max_steps", "recipe_warmup_lr",
)
METRICS_COLUMNS = (
    "trial_id", "step", "epoch", "lr", "train_loss", "train_error", "eval_loss", "eval_error",
    "eval_top5_error", "eval_split", "images_per_s", "wall_s",
)
METRICS_NUMERIC = (
    "step", "epoch", "lr", "train_loss", "train_error", "eval_loss", "eval_error",
    "eval_top5_error", "images_per_s", "wall_s",
)
THROUGHPUT_COLUMNS = (  # the columns of results/throughput/throughput.csv a report reads
    "model", "mode", "batch_size", "precision", "channels_last", "compiled", "images_per_s",
    "device_name", "measured_at",
)
THROUGHPUT_NUMERIC = ("batch_size", "images_per_s", "peak_memory_mb", "flops_fraction",
                      "device_peak_tflops", "cores")
PACKING_COLUMNS = (  # the columns of results/throughput/packing.csv a report reads
    "model", "trials", "batch_size", "precision", "channels_last", "compiled", "images_per_s_total",
    "images_per_s_per_trial", "speedup_vs_one", "efficiency", "device_name", "measured_at",
)
PACKING_NUMERIC = ("trials", "batch_size", "steps", "rounds", "images_per_s_total", "images_per_s_per_trial",
                   "speedup_vs_one", "efficiency", "cores")
# results/evaluations.csv (`python -m benchmark evaluate`): the columns a report reads.
EVALUATIONS_COLUMNS = ("evaluated_at", "model", "weights", "suite", "trial_id", "dataset", "data_source", "eval_split",
                       "images", "crops", "normalisation", "top1_error", "top5_error", "device")
EVALUATIONS_NUMERIC = ("images", "crops", "top1_error", "top5_error", "loss", "batch_size")
# Written by `python -m benchmark analyze --out results/<suite>/analysis` (benchmark/analysis/diagnostics.py).
ANALYSIS_FILES = ("gradient_norms.csv", "layer_responses.csv")
ANALYSIS_COLUMNS = ("layer_index", "layer", "model", "kind", "depth", "checkpoint", "step", "value")
ANALYSIS_NUMERIC = ("layer_index", "depth", "step", "value")

KINDS = ("plain", "residual", "highway", "dense")  # benchmark.models.registry.Kind
# Errors are percentages like the paper's tables; a fraction (0-1) would pass this check, but a
# value above 100 or below 0 is certainly corrupt.
PERCENT_COLUMNS = ("final_train_error", "final_eval_error", "final_eval_top5_error",
                   "train_error", "eval_error", "eval_top5_error")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


@dataclass(frozen=True)
class Results:
    """One validated results folder. ``runs`` gains a ``variant`` column (see ``_variant``)."""

    path: Path
    suite: str
    runs: pd.DataFrame
    metrics: pd.DataFrame
    throughput: pd.DataFrame | None = None
    throughput_path: Path | None = None
    analysis: dict[str, pd.DataFrame] = field(default_factory=dict)
    evaluations: pd.DataFrame | None = None  # rows of evaluations.csv scoring this suite's nets


def _read_csv(path: Path, required: tuple[str, ...], numeric: tuple[str, ...]) -> pd.DataFrame:
    """Read ``path`` as text, check its shape and columns, then convert the numeric columns."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle, strict=True))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a readable CSV file ({exc})") from exc
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ResultsError(f"{path}: empty file (expected a header with columns {', '.join(required)})")
    header = [cell.strip() for cell in rows[0]]
    missing = [name for name in required if name not in header]
    if missing:
        raise ResultsError(f"{path}: missing columns {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise ResultsError(f"{path}: duplicate column names in the header")
    body, lines = [], []
    for line_number, row in enumerate(rows[1:], start=2):
        if not row:
            continue  # a blank line (e.g. trailing) is harmless
        body.append(row)
        lines.append(line_number)
        if len(row) != len(header):
            # A short or long line: a torn append, a comma in an unquoted field. Guessing which
            # cell moved where would give a silently wrong report.
            raise ResultsError(
                f"{path}: line {line_number} has {len(row)} fields, the header has {len(header)}"
            )
    frame = pd.DataFrame(body, columns=header, dtype=object)
    frame.attrs["lines"] = lines  # file line of each row, for error messages
    for name in frame.columns:
        frame[name] = frame[name].astype(object).map(str.strip)
    for name in (column for column in numeric if column in frame.columns):
        text = frame[name]
        values = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        bad = text.ne("") & values.isna() & ~text.str.lower().isin(["nan", "inf", "-inf"])
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise ResultsError(
                f"{path}: column {name} must be numeric, line {_line(frame, first)} holds {text.iloc[first]!r}"
            )
        frame[name] = values.astype(float)
    return frame


def _checked(frame: pd.DataFrame) -> pd.DataFrame:
    """A validated table without its line numbers: pandas deep-copies ``attrs`` into the result of
    every operation, and a 20,000-row metrics table's list of lines made each one cost milliseconds."""
    frame.attrs.clear()
    return frame


def _line(frame: pd.DataFrame, position: int) -> int:
    """The file line of row ``position`` (blank lines are skipped, so it is not position + 2)."""
    return frame.attrs["lines"][position]


def _check_percent(frame: pd.DataFrame, path: Path, columns: tuple[str, ...] = PERCENT_COLUMNS) -> None:
    for name in columns:
        if name in frame.columns:
            values = frame[name]
            bad = values.notna() & np.isfinite(values) & ((values < 0) | (values > 100))
            if bad.any():
                first = int(np.flatnonzero(bad.to_numpy())[0])
                raise ResultsError(
                    f"{path}: column {name} is a percentage (0-100), line {_line(frame, first)} holds {values.iloc[first]}"
                )


def _check_choice(frame: pd.DataFrame, column: str, allowed: tuple[str, ...], path: Path) -> None:
    bad = ~frame[column].isin(allowed)
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise ResultsError(
            f"{path}: column {column} must be one of {'|'.join(allowed)}, line {_line(frame, first)} holds "
            f"{frame[column].iloc[first]!r}"
        )


def _parse_bool(frame: pd.DataFrame, column: str, path: Path) -> None:
    lowered = frame[column].str.lower()
    bad = ~lowered.isin(_TRUE | _FALSE)
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise ResultsError(f"{path}: column {column} must be true/false, line {_line(frame, first)} holds "
                           f"{frame[column].iloc[first]!r}")
    frame[column] = lowered.isin(_TRUE)


def _variant(row: pd.Series) -> str:
    """A label that tells apart trials the tables must not pool: model, shortcut, pre-activation."""
    label = str(row["model"])
    if row["kind"] == "residual" and row["shortcut"]:
        label += f"-{row['shortcut']}"
    if row["preact"]:
        label += "-preact"
    return label


def read_runs(path: Path) -> pd.DataFrame:
    runs = _read_csv(path, RUNS_COLUMNS, RUNS_NUMERIC)
    _check_choice(runs, "status", STATUSES, path)
    _check_choice(runs, "kind", KINDS, path)
    _parse_bool(runs, "preact", path)
    _check_percent(runs, path)
    if runs["depth"].isna().any():
        raise ResultsError(f"{path}: column depth has empty cells")
    duplicated = runs["trial_id"].duplicated()
    if duplicated.any():
        raise ResultsError(f"{path}: trial_id {runs['trial_id'][duplicated].iloc[0]!r} appears twice")
    if (runs["trial_id"] == "").any():
        raise ResultsError(f"{path}: column trial_id has empty cells")
    runs["depth"] = runs["depth"].astype(int)
    runs["variant"] = runs.apply(_variant, axis=1) if len(runs) else pd.Series(dtype=object)
    return _checked(runs)


def read_metrics(path: Path, runs: pd.DataFrame, runs_path: Path) -> pd.DataFrame:
    metrics = _read_csv(path, METRICS_COLUMNS, METRICS_NUMERIC)
    _check_percent(metrics, path)
    if metrics["step"].isna().any():
        raise ResultsError(f"{path}: column step has empty cells")
    duplicated = metrics.duplicated(["trial_id", "step"])
    if duplicated.any():
        first = metrics[duplicated].iloc[0]
        raise ResultsError(
            f"{path}: duplicate (trial_id, step) row ({first['trial_id']!r}, {int(first['step'])}); "
            "two writers or a replayed trial? the report will not guess which row is right"
        )
    unknown = sorted(set(metrics["trial_id"]) - set(runs["trial_id"]))
    if unknown:
        raise ResultsError(f"{path}: trial_ids not in {runs_path.name}: {', '.join(unknown[:5])}")
    return _checked(metrics).sort_values(["trial_id", "step"], kind="stable").reset_index(drop=True)


def _throughput_path(results_dir: Path) -> Path | None:
    # results/throughput/throughput.csv sits beside the suites' folders (docs/interfaces.md); a
    # copy inside the suite's own folder is read too, so a folder can travel on its own.
    for candidate in (results_dir / "throughput.csv", results_dir.parent / "throughput" / "throughput.csv"):
        if candidate.is_file():
            return candidate
    return None


def _load_measurements(path: Path, required: tuple[str, ...], numeric: tuple[str, ...]) -> pd.DataFrame:
    """An append-only measurement table of results/throughput/, validated."""
    table = _read_csv(path, required, numeric)
    for column in ("channels_last", "compiled"):
        _parse_bool(table, column, path)
    return _checked(table)


def load_throughput(path: Path) -> pd.DataFrame:
    """The profile's table (results/throughput/throughput.csv, `python -m benchmark profile`)."""
    return _load_measurements(path, THROUGHPUT_COLUMNS, THROUGHPUT_NUMERIC)


def load_packing(path: Path) -> pd.DataFrame:
    """The packing table (results/throughput/packing.csv, `python -m benchmark packing`)."""
    return _load_measurements(path, PACKING_COLUMNS, PACKING_NUMERIC)


def _with_subsets(runs: pd.DataFrame, trials_dir: Path) -> pd.DataFrame:
    """``train_subset`` / ``eval_subset`` of every trial (NaN: the whole set), from its
    ``trials/<trial_id>.json`` where that exists (the trial's own configuration, also for a runs.csv
    written before these columns were), else from runs.csv."""
    runs = runs.copy()
    for column in ("train_subset", "eval_subset"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce") if column in runs else np.nan
    for index, trial_id in runs["trial_id"].items():
        try:
            data = json.loads((trials_dir / f"{trial_id}.json").read_text())["trial"]["data"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        runs.loc[index, ["train_subset", "eval_subset"]] = [data.get("train_subset"), data.get("eval_subset")]
    return runs


def evaluations_path(results_dir: Path) -> Path | None:
    """results/evaluations.csv beside the suites' folders (a copy in the suite's own folder first)."""
    for candidate in (results_dir / "evaluations.csv", results_dir.parent / "evaluations.csv"):
        if candidate.is_file():
            return candidate
    return None


def load_evaluations(path: Path) -> pd.DataFrame:
    """The evaluations table (`python -m benchmark evaluate`), validated."""
    table = _read_csv(path, EVALUATIONS_COLUMNS, EVALUATIONS_NUMERIC)
    _check_percent(table, path, ("top1_error", "top5_error"))
    return _checked(table)


def load_results(results_dir: str | Path) -> Results:
    """Read and validate ``results_dir`` (runs.csv, metrics.csv, optional throughput/analysis)."""
    path = Path(results_dir)
    if not path.exists():
        raise ResultsError(f"results folder {path} does not exist")
    if not path.is_dir():
        raise ResultsError(f"results folder {path} is not a folder")
    runs_path, metrics_path = path / "runs.csv", path / "metrics.csv"
    if not runs_path.is_file():
        if not any(path.iterdir()):
            raise ResultsError(f"results folder {path} is empty (expected runs.csv and metrics.csv)")
        raise ResultsError(f"results folder {path} has no runs.csv")
    runs = read_runs(runs_path)
    if runs.empty:
        raise ResultsError(f"{runs_path}: no trials (only a header)")
    runs = _with_subsets(runs, path / "trials")
    if metrics_path.is_file():
        metrics = read_metrics(metrics_path, runs, runs_path)
    else:
        # No trial has reported yet (all pending): a valid, if empty, state; the report says so.
        metrics = pd.DataFrame({name: pd.Series(dtype=float if name in METRICS_NUMERIC else object)
                                for name in METRICS_COLUMNS})
    suites = sorted(set(runs["suite"]) - {""})
    suite = suites[0] if len(suites) == 1 else path.name
    throughput_path = _throughput_path(path)
    throughput = load_throughput(throughput_path) if throughput_path is not None else None
    analysis: dict[str, pd.DataFrame] = {}
    for name in ANALYSIS_FILES:
        file = path / "analysis" / name
        if file.is_file():
            table = _read_csv(file, ANALYSIS_COLUMNS, ANALYSIS_NUMERIC)
            _check_choice(table, "kind", KINDS, file)
            analysis[name.removesuffix(".csv")] = _checked(table)
    evaluations = None
    if (found := evaluations_path(path)) is not None:
        table = load_evaluations(found)
        evaluations = table[(table["suite"] == suite) & table["trial_id"].isin(runs["trial_id"])].reset_index(drop=True)
    return Results(path=path, suite=suite, runs=runs, metrics=metrics, throughput=throughput,
                   throughput_path=throughput_path, analysis=analysis, evaluations=evaluations)
