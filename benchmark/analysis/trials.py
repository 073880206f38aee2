"""One row per trial, as analysis and reports read it: its last evaluation, how it was tested, and how
far it got against the paper's schedule (the "1,200 of 64,000 iterations" of a report).

The paper's schedule is the named recipe's ``max_steps`` (``benchmark.suite.recipes.RECIPES``: 64,000
iterations on CIFAR-10, Section 4.2; 600,000 on ImageNet, Section 3.4), not the trial's own
``recipe_max_steps``: a suite that overrides ``max_steps`` to 1,200 ran 1,200 of the paper's 64,000
iterations, and its final errors are not the paper's final errors. A trial whose recipe is not one
of the paper's is measured against the paper's recipe for its dataset.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmark.results.read import Results
from benchmark.suite.recipes import RECIPES, recipe_differences

PAPER_RECIPE = {"cifar10": "cifar10_he2015", "imagenet": "imagenet_he2015"}


def paper_schedule(recipe: str, dataset: str) -> float:
    """The paper's number of iterations for a trial of ``recipe`` on ``dataset`` (NaN when unknown)."""
    named = RECIPES.get(recipe) or RECIPES.get(PAPER_RECIPE.get(dataset, ""))
    return float(named.max_steps) if named is not None else math.nan


def add_progress(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` (one row per trial with ``last_step``, as ``final_by_trial`` makes) plus:

    - ``reached``: iterations run (runs.csv's ``steps``, else the last evaluation's step, else 0);
    - ``schedule``: the paper's iterations for that trial (``paper_schedule``);
    - ``not_comparable``: why the trial's final errors may not stand beside a paper's even after the
      whole schedule ("" when they may): the named recipe changed (`--set recipe.lr=...`), or
      trained or tested on a subset (`comparability`);
    - ``complete``: status ``completed``, ``reached`` at least ``schedule`` and nothing in
      ``not_comparable``: the only trials whose final errors may stand beside the paper's.
    """
    recipes = trials["recipe"] if "recipe" in trials else pd.Series("", index=trials.index)
    steps = trials["steps"] if "steps" in trials else pd.Series(np.nan, index=trials.index)
    reached = steps.where(steps.notna() & (steps > 0), trials["last_step"]).fillna(0.0).astype(float)
    schedule = pd.Series([paper_schedule(r, d) for r, d in zip(recipes, trials["dataset"])], index=trials.index,
                         dtype=float)
    reasons = pd.Series([comparability(row, reached[i] < schedule[i]) for i, row in trials.iterrows()],
                        index=trials.index, dtype=object)
    complete = (trials["status"] == "completed") & (reached >= schedule) & (reasons == "")
    return trials.assign(reached=reached, schedule=schedule, not_comparable=reasons, complete=complete)


def comparability(row: pd.Series, short: bool) -> str:
    """Why one trial's final errors are not the paper's protocol, beyond its length ("" if they are):
    a final-error comparison needs the named recipe unchanged and the whole training set of the
    split and the whole test set. A `short` trial's max_steps and milestones differ by its length,
    which its "N of M iterations" already says."""
    reasons = []
    for name, label in (("train_subset", "trained on {:,.0f} images, not the whole training set"),
                        ("eval_subset", "tested on {:,.0f} images, not the whole test set")):
        value = row.get(name)
        if value is not None and not pd.isna(value):
            reasons.append(label.format(float(value)))
    # Empty cells are unrecorded (a runs.csv written by hand or before a field existed), not changes.
    recorded = {key: row[key] for key in row.index
                if (key == "recipe" or str(key).startswith("recipe_")) and not _empty(row[key])}
    if "recipe" not in recorded:
        return "; ".join(reasons)  # a hand-made runs.csv without the recipe is taken at its word
    changed = {field: change for field, change in recipe_differences(recorded).items()
               if not (short and field in ("max_steps", "lr_milestones"))}
    if changed:
        named = row.get("recipe") or "no named recipe"
        reasons.append(f"recipe {named} changed: " + ", ".join(f"{field} {old} → {new}" for field, (old, new) in changed.items())
                       if "recipe" not in changed else f"recipe {named} is not a named recipe")
    return "; ".join(reasons)


def iterations(reached: float, schedule: float) -> str:
    """'1,200 of 64,000 iterations' (or '1,200 iterations' when the schedule is unknown)."""
    if math.isnan(schedule):
        return f"{reached:,.0f} iterations"
    return f"{reached:,.0f} of {schedule:,.0f} iterations"


def iterations_range(reached: pd.Series | list[float], schedule: float) -> str:
    """'1,200 of 64,000 iterations', or '600–1,200 of 64,000 iterations' for trials that differ."""
    values = [float(v) for v in reached]
    low, high = min(values), max(values)
    if low == high:
        return iterations(high, schedule)
    total = "" if math.isnan(schedule) else f" of {schedule:,.0f}"
    return f"{low:,.0f}–{high:,.0f}{total} iterations"


def final_by_trial(results: Results) -> pd.DataFrame:
    """One row per trial: its run columns plus the last evaluation and the number of eval points.

    runs.csv's final_* columns are the trainer's own final evaluation; where a trial has none yet
    (running, diverged) the last row of metrics.csv stands in.
    """
    metrics = results.metrics
    last = metrics.groupby("trial_id", sort=False).tail(1).set_index("trial_id")
    points = metrics.groupby("trial_id").size()
    frame = results.runs.copy()
    frame["n_points"] = frame["trial_id"].map(points).fillna(0).astype(int)
    frame["last_step"] = frame["trial_id"].map(last["step"])
    for final, column in (("final_eval_error", "eval_error"), ("final_eval_top5_error", "eval_top5_error"),
                          ("final_train_error", "train_error")):
        frame[final] = frame[final].fillna(frame["trial_id"].map(last[column]))
    frame["protocol"] = eval_protocol(frame)
    return add_progress(frame)


def eval_protocol(trials: pd.DataFrame) -> pd.Series:
    """How each trial was tested, from its own record: ImageNet '10-crop' or 'centre crop' (runs.csv's
    eval_ten_crop; 'unrecorded' where an older runs.csv has no such column); CIFAR-10 'single-crop'."""
    if "eval_ten_crop" in trials:
        flag = trials["eval_ten_crop"].astype(str).str.strip().str.lower()
        imagenet = np.where(flag.isin(["true", "1", "yes"]), "10-crop",
                            np.where(flag.isin(["false", "0", "no"]), "centre crop", "unrecorded"))
    else:
        imagenet = "unrecorded"
    return pd.Series(np.where(trials["dataset"] == "imagenet", imagenet, "single-crop"), index=trials.index)


def summarise(values: pd.Series) -> dict[str, float]:
    """n, mean, sample std (NaN below two), min and max of the finite values: the statistics over
    seeds every table of final errors shows."""
    finite = values[np.isfinite(values)]
    n = int(finite.size)
    return {"n": n, "mean": float(finite.mean()) if n else float("nan"),
            "std": float(finite.std(ddof=1)) if n > 1 else float("nan"),
            "min": float(finite.min()) if n else float("nan"), "max": float(finite.max()) if n else float("nan")}


def not_comparable_text(trials: pd.DataFrame) -> str:
    """Why none of ``trials`` (one net's) may be compared with a paper's final errors: how far they
    got when short of the schedule, and every other reason any of them has."""
    parts = []
    if (trials["reached"] < trials["schedule"]).any():
        parts.append(iterations_range(trials["reached"], trials["schedule"].max()))
    parts += sorted({reason for reason in trials.get("not_comparable", pd.Series(dtype=object)) if reason})
    return "not comparable: " + "; ".join(parts) if parts else "not comparable"


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""
