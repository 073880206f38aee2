"""The report's section on the paper's relatives: highway nets, pre-activation, wide, ResNeXt and
DenseNet nets beside the paper's ResNets, each compared only with the number of its own paper.

A table (parameters, mult-adds, measured error mean ± std (n), the own paper's number and the
difference), a figure of error against parameters and against mult-adds, and the relatives'
training throughput from ``python -m benchmark profile``. The sections about the paper's own tables
(Figure 6, error against depth, Tables 2/3/6, shortcut options) see only the paper's own nets:
``paper_nets`` gives them that part of the results.

Parameters and mult-adds are counted from the registry with every layer on the meta device (shapes
only, no weights), so they are the counts of the code that trained; the published counts are data
(``benchmark.analysis.reference.relatives``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from benchmark.analysis.reference.relatives import is_paper_model, own_number, published_parameters
from benchmark.analysis.trials import final_by_trial, iterations, iterations_range, not_comparable_text, summarise
from benchmark.report.figures import STYLE, NamedFigure
from benchmark.report.formats import number, seed_stats, signed
from benchmark.report.render import Block, Heading, Paragraph, Table, save_figure
from benchmark.report.tables import THROUGHPUT_SETTING, jpeg_costs, latest
from benchmark.report.tables import _excluded as excluded_trials  # the paper's tables' rule, shared
from benchmark.results.read import Results
from benchmark.suite.recipes import PAPER_RECIPES

COLUMNS = ["variant", "model", "recipe", "own_recipe", "data_source", "eval_split", "parameters",
           "published_parameters", "multiply_adds", "iterations", "comparable", "n", "mean", "std", "min", "max",
           "paper", "paper_std", "paper_statistic", "paper_source", "difference", "excluded", "note"]


def paper_nets(results: Results) -> Results:
    """The part of ``results`` that holds the ResNet paper's own nets (plain and ResNet)."""
    keep = results.runs["model"].map(is_paper_model).astype(bool)
    runs = results.runs[keep].reset_index(drop=True)
    metrics = results.metrics[results.metrics["trial_id"].isin(runs["trial_id"])].reset_index(drop=True)
    return dataclasses.replace(results, runs=runs, metrics=metrics)


def has_relatives(results: Results) -> bool:
    return not results.runs["model"].map(is_paper_model).astype(bool).all()


def complexity(model: str, shortcut: str | None, preact: bool) -> tuple[int, int]:
    """(parameters, forward mult-adds per image) of ``model`` as a trial builds it."""
    from benchmark.models import named_complexity  # here: only a report with relatives needs the models

    return named_complexity(model, shortcut, preact)


def relatives_table(results: Results) -> pd.DataFrame:
    """One row per (variant, recipe, data source, eval split) of the CIFAR-10 trials, when the results
    hold a relative: the measured mean ± std over seeds beside the own paper's number.

    As for the paper's tables (``tables.reproduction_table``), only trials that ran their recipe's
    whole schedule are compared (``comparable``); when a group has none, its completed trials are
    shown with how far they ran and no difference. ``difference`` = measured mean − own paper's
    number; NaN where that paper gives none or the trials are short of the schedule.
    """
    trials = final_by_trial(results)
    trials = trials[trials["dataset"] == "cifar10"]
    if trials.empty or not has_relatives(results):
        return pd.DataFrame(columns=COLUMNS)
    recipe = trials["recipe"] if "recipe" in trials else pd.Series("", index=trials.index)
    trials = trials.assign(recipe=recipe.fillna(""))
    costs = jpeg_costs(trials)
    rows = []
    for (variant, recipe_name, source, split), group in trials.groupby(
            ["variant", "recipe", "data_source", "eval_split"], sort=False):
        first = group.iloc[0]
        model, preact, shortcut = str(first["model"]), bool(first["preact"]), first["shortcut"] or None
        completed = group[group["status"] == "completed"]
        complete = completed[completed["complete"]]
        judged = complete if len(complete) else completed
        stats = summarise(judged["final_eval_error"])
        if len(complete):
            reached = iterations(complete["reached"].max(), complete["schedule"].max())
        else:
            reached = iterations_range(judged["reached"], judged["schedule"].max()) if len(judged) else ""
        parameters, multiply_adds = complexity(model, shortcut, preact)
        own = own_number(model, preact)
        notes = []
        own_recipe = own is not None and PAPER_RECIPES.get(own.source) == recipe_name
        if own is None:
            notes.append("its paper gives no CIFAR-10 number for this net")
        elif stats["n"] and not len(complete):
            notes.append(not_comparable_text(judged))
        elif not own_recipe:
            notes.append(f"trained with {recipe_name or 'an unnamed recipe'}; its paper used "
                         f"{PAPER_RECIPES.get(own.source, 'its own recipe')}")
        if own is not None and own.statistic == "median":
            notes.append(f"paper: the median of {own.n_runs} runs" if own.n_runs else "paper: a median")
        elif own is not None and own.statistic == "single":
            notes.append("paper: one number, no spread given")
        if split and split != "test":
            notes.append(f"evaluated on {split!r}, the papers on the test set")
        if "jpeg" in str(source).lower():
            notes.append(costs.get(variant, "JPEG copy: its cost against the original data is unmeasured"))
        rows.append({
            "variant": variant, "model": model, "recipe": recipe_name, "own_recipe": own_recipe,
            "data_source": source, "eval_split": split, "parameters": parameters,
            "published_parameters": published_parameters(model) or math.nan, "multiply_adds": multiply_adds,
            "iterations": reached, "comparable": bool(len(complete)), **stats,
            "paper": own.value if own else math.nan,
            "paper_std": own.std if own and own.std is not None else math.nan,
            "paper_statistic": own.statistic if own else "", "paper_source": own.label if own else "",
            "difference": stats["mean"] - own.value if own and len(complete) else math.nan,
            "excluded": excluded_trials(group), "note": "; ".join(notes),
        })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["recipe", "parameters", "variant"], kind="stable").reset_index(drop=True)


def error_figure(table: pd.DataFrame) -> NamedFigure:
    """Final test error against parameters (left) and mult-adds (right), log scales; the own papers'
    numbers as open black markers at the same abscissa."""
    recipes = list(dict.fromkeys(table["recipe"]))
    markers = dict(zip(recipes, "osD^v<>"))
    with sns.axes_style(STYLE):
        figure = Figure(figsize=(12, 4.6), layout="constrained")
        axes = figure.subplots(1, 2, sharey=True)
    for ax, column, label in ((axes[0], "parameters", "parameters"), (axes[1], "multiply_adds", "mult-adds per image")):
        measured = table[table["n"] > 0]
        for recipe, group in measured.groupby("recipe", sort=False):
            ax.errorbar(group[column], group["mean"], yerr=group["std"].fillna(0), fmt=markers[recipe], capsize=3,
                        label=f"measured, {recipe}")
            for _, row in group.iterrows():
                ax.annotate(row["variant"], (row[column], row["mean"]), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
        papers = table.dropna(subset=["paper"]).drop_duplicates("variant")
        ax.scatter(papers[column], papers["paper"], marker="*", s=110, facecolors="none", edgecolors="black",
                   zorder=3, label="own paper")
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} (log scale)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("final test error (%)")
    caption = ("Final test error (last evaluation, mean ± std over completed seeds) of every net against its "
               "parameters (left) and forward mult-adds per image (right); one marker per recipe. Open stars: "
               "the number of each net's own paper, at our count of its parameters and mult-adds. Runs short of "
               "their recipe's schedule are drawn too; the table says which (their errors are not final).")
    return NamedFigure("relatives_error", caption, figure)


def throughput_table(results: Results) -> pd.DataFrame:
    """Training images/s of the results' models from the profile (latest row per setting and device)."""
    if results.throughput is None:
        return pd.DataFrame(columns=[*THROUGHPUT_SETTING, "device_name", "images_per_s"])
    frame = results.throughput
    frame = frame[frame["model"].isin(set(results.runs["model"])) & (frame["mode"] == "train")]
    frame = latest(frame, THROUGHPUT_SETTING + ["device_name"])
    columns = ["model", "batch_size", "precision", "channels_last", "compiled", "device_name", "images_per_s"]
    return frame.sort_values(["device_name", "model", "precision"], kind="stable")[columns].reset_index(drop=True)


def section(results: Results, folder: Path) -> list[Block]:
    """The report's blocks for the relatives; none when the results hold none."""
    table = relatives_table(results)
    if table.empty:
        return []
    blocks: list[Block] = [
        Heading("The paper's relatives"),
        Paragraph("Each net is compared only with the number of its own paper (highway nets: Srivastava et al. "
                  "via the ResNet paper's Table 6; pre-activation and gated ResNets: Identity Mappings; WRN, "
                  "ResNeXt and DenseNet: their papers; the paper's ResNets: Table 6). Measured: mean ± sample std "
                  "over completed seeds (n, min–max); only trials that ran their recipe's whole schedule are "
                  "compared (else: not comparable). Difference = measured − own paper. Params: our exact count "
                  "(published count in brackets); mult-adds: forward, one 32×32 image, conv + fc."),
        _render(table),
        save_figure(error_figure(table), folder),
    ]
    throughput = throughput_table(results)
    if throughput.empty:
        blocks.append(Paragraph("No training throughput from `python -m benchmark profile` for these models "
                                "(suites/throughput_relatives.yaml measures them)."))
    else:
        source = results.throughput_path
        blocks += [Heading("Training throughput of the relatives", 3),
                   Paragraph(f"Training images/s (forward + backward + SGD step, the step alone) from {source}, "
                             "latest measurement of each setting."),
                   _plain_table(throughput.assign(images_per_s=throughput["images_per_s"].map(lambda v: f"{v:.0f}")))]
    return blocks


def _render(table: pd.DataFrame) -> Table:
    def paper(row: pd.Series) -> str:
        if math.isnan(row["paper"]):
            return "—"
        std = "" if math.isnan(row["paper_std"]) else f" ± {number(row['paper_std'])}"
        return f"{number(row['paper'])}{std} ({row['paper_source']})"

    def parameters(row: pd.Series) -> str:
        published = "" if math.isnan(row["published_parameters"]) else f" [{row['published_parameters'] / 1e6:g}M]"
        return f"{row['parameters'] / 1e6:.2f}M{published}"

    header = ("model", "recipe", "data source", "params", "mult-adds", "iterations", "measured", "own paper",
              "difference", "not counted", "note")
    rows = tuple(
        (str(row["variant"]), str(row["recipe"]), str(row["data_source"]), parameters(row),
         f"{row['multiply_adds'] / 1e9:.2f}G", str(row["iterations"]), seed_stats(row["n"], row["mean"], row["std"], row["min"], row["max"]),
         paper(row), signed(row["difference"]), str(row["excluded"]), str(row["note"]))
        for _, row in table.iterrows()
    )
    return Table(header, rows)


def _plain_table(frame: pd.DataFrame) -> Table:
    return Table(tuple(str(c) for c in frame.columns), tuple(tuple(str(v) for v in row) for row in frame.itertuples(index=False)))
