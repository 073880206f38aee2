"""The report's figures, as matplotlib ``Figure`` objects (no pyplot: no global figure state).

Curves are aggregated with pandas first (mean, min and max over seeds per step) and drawn with
``plot`` + ``fill_between``: seaborn's own bootstrap confidence intervals would cost seconds per
figure for a large suite and say nothing more than the min-max band over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.analysis.reference import paper_table
from benchmark.analysis.trials import iterations_range
from benchmark.report.tables import THROUGHPUT_SETTING, depth_table, latest
from benchmark.results.read import Results

STYLE = "whitegrid"


@dataclass(frozen=True)
class NamedFigure:
    """A figure with the file stem it is saved under and the caption the report prints."""

    name: str
    caption: str
    figure: Figure


def _depth_colours(depths: list[int]) -> dict[int, tuple[float, float, float]]:
    palette = sns.color_palette("viridis", n_colors=max(len(depths), 1))
    return {depth: palette[i] for i, depth in enumerate(sorted(depths))}


def _curves(results: Results) -> pd.DataFrame:
    """Mean, min and max over seeds of train and test error per (dataset, kind, shortcut, depth, step)."""
    runs = results.runs[["trial_id", "dataset", "kind", "shortcut", "preact", "depth"]]
    frame = results.metrics[["trial_id", "step", "train_error", "eval_error"]].merge(runs, on="trial_id")
    frame = frame[~frame["preact"]]  # Figure 6 is about the original (post-activation) blocks
    keys = ["dataset", "kind", "shortcut", "depth", "step"]
    aggregated = frame.groupby(keys)[["train_error", "eval_error"]].agg(["mean", "min", "max"])
    aggregated.columns = [f"{column}_{stat}" for column, stat in aggregated.columns]
    aggregated["seeds"] = frame.groupby(keys)["trial_id"].nunique()
    return aggregated.reset_index()


def _draw_curves(ax, curves: pd.DataFrame, colours: dict[int, tuple], label_prefix: str) -> None:
    for depth, group in curves.groupby("depth"):
        colour = colours[depth]
        steps = group["step"].to_numpy()
        for column, style, width in (("train_error", "--", 1.0), ("eval_error", "-", 1.8)):
            ax.fill_between(steps, group[f"{column}_min"], group[f"{column}_max"], color=colour, alpha=0.15,
                            linewidth=0)
            ax.plot(steps, group[f"{column}_mean"], style, color=colour, linewidth=width,
                    label=f"{label_prefix}-{depth} (n={group['seeds'].max()})" if column == "eval_error" else None)


def figure6(results: Results) -> list[NamedFigure]:
    """Training (dashed) and test (solid) error against iterations, plain | residual (Fig. 6).

    One figure per dataset and residual shortcut option; lines are means over seeds, bands span
    the min-max over seeds (the legend gives each net's number of seeds, n).
    """
    curves = _curves(results)
    figures = []
    for dataset, data in curves.groupby("dataset"):
        plain = data[data["kind"] == "plain"]
        residual = data[data["kind"] == "residual"]
        shortcuts = sorted(residual["shortcut"].unique()) or [None]
        colours = _depth_colours(sorted(data["depth"].unique()))
        for shortcut in shortcuts:
            with sns.axes_style(STYLE):
                figure = Figure(figsize=(11, 4.2), layout="constrained")
                axes = figure.subplots(1, 2, sharey=True)
            panels = ((axes[0], plain, "plain", "plain"),
                      (axes[1], residual[residual["shortcut"] == shortcut] if shortcut else residual,
                       "ResNet", f"residual (option {shortcut})" if shortcut else "residual"))
            for ax, subset, prefix, title in panels:
                if subset.empty:
                    ax.text(0.5, 0.5, f"no {title} trials", ha="center", va="center", transform=ax.transAxes)
                else:
                    _draw_curves(ax, subset, colours, prefix)
                    handles, labels = ax.get_legend_handles_labels()
                    handles += [Line2D([], [], color="grey", linestyle="--"), Line2D([], [], color="grey")]
                    labels += ["training error", "test error"]
                    ax.legend(handles, labels, fontsize=8, loc="upper right")
                ax.set_title(f"{dataset}: {title}")
                ax.set_xlabel("iterations")
                ax.set_ylim(bottom=0)
            axes[0].set_ylabel("error (%)")
            name = f"figure6_{dataset}" + (f"_{shortcut}" if shortcut and len(shortcuts) > 1 else "")
            caption = (f"Training error (dashed) and test error (solid) on {dataset} against iterations, "
                       "plain nets (left) and residual nets (right), as the paper's Figure 6. Lines: mean "
                       "over seeds; bands: min-max over the seeds (n in the legend; one seed draws no band).")
            figures.append(NamedFigure(name, caption, figure))
    return figures


def _paper_depth_markers(dataset: str) -> pd.DataFrame:
    """The paper's final errors per depth: Table 6 (CIFAR-10, option A) or Table 2 (ImageNet)."""
    table = paper_table(6 if dataset == "cifar10" else 2)
    table = table[(table["metric"] == "top1_error") & table["model"].notna()]
    if dataset == "cifar10":
        # One marker per depth; ResNet-110's mean of 5 runs, as our seeds are averaged too.
        table = table[table["statistic"] != "best"]
    return table[["kind", "depth", "value"]]


def depth_figure(results: Results) -> list[NamedFigure]:
    """Final test error against depth, plain vs residual, the paper's numbers as markers."""
    frame = depth_table(results)
    figures = []
    for dataset, data in frame.groupby("dataset"):
        with sns.axes_style(STYLE):
            figure = Figure(figsize=(6.5, 4.2), layout="constrained")
            ax = figure.subplots()
        palette = dict(zip(sorted(data["series"].unique()), sns.color_palette("deep")))
        for series, group in data.groupby("series"):
            group = group.sort_values("depth")
            ax.errorbar(group["depth"], group["mean"], yerr=group["std"].fillna(0), marker="o", capsize=3,
                        color=palette[series], label=f"measured: {series}")
        paper = _paper_depth_markers(dataset)
        paper = paper[paper["depth"].isin(data["depth"])]  # the measured depths only: 1202 would squash the axis
        complete = bool(data["complete"].all())
        if not complete:  # the paper's markers are final errors: beside a short run they would mislead
            paper = paper.iloc[0:0]
        table_name = "Table 6" if dataset == "cifar10" else "Table 2"
        for kind, marker in (("plain", "s"), ("residual", "*")):
            points = paper[paper["kind"] == kind]
            if not points.empty:
                ax.scatter(points["depth"], points["value"], marker=marker, s=90, color="black", zorder=3,
                           label=f"paper {table_name}: {kind}", facecolors="none" if kind == "plain" else "black")
        ax.set_xscale("log")
        depths = sorted(data["depth"].unique())
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.set_xlabel("depth (layers, log scale)")
        ax.set_ylabel("final test error (%)" if complete else "test error at the last evaluation (%)")
        ax.set_title(f"{dataset}: final test error against depth" if complete else
                     f"{dataset}: test error against depth, {iterations_range(data['reached'], float(data['schedule'].max()))}")
        ax.legend(fontsize=8)
        if complete:
            markers = (f"; black markers: the paper's {table_name}"
                       + (" (no plain-net numbers exist for CIFAR-10; ResNet-110 shows the mean of 5 runs)."
                          if dataset == "cifar10" else "."))
        else:
            reached = iterations_range(data["reached"], float(data["schedule"].max()))
            markers = (f", after {reached}: short of the paper's schedule, so the paper's final errors "
                       f"({table_name}) are not drawn beside them.")
        caption = (f"Final test error (last evaluation, mean ± std over completed seeds) against depth on "
                   f"{dataset}" + markers)
        figures.append(NamedFigure(f"depth_{dataset}", caption, figure))
    return figures


def gradient_figure(gradients: pd.DataFrame) -> NamedFigure:
    """Gradient norm of every conv weight against layer index, plain vs residual, per checkpoint."""
    checkpoints = list(dict.fromkeys(gradients["checkpoint"]))
    with sns.axes_style(STYLE):
        figure = Figure(figsize=(5.5 * len(checkpoints), 4.2), layout="constrained")
        axes = np.atleast_1d(figure.subplots(1, len(checkpoints), squeeze=False)[0])
    for ax, checkpoint in zip(axes, checkpoints):
        data = gradients[gradients["checkpoint"] == checkpoint]
        for model, group in data.groupby("model", sort=False):
            kind = group["kind"].iloc[0]
            ax.plot(group["layer_index"], group["value"], "-" if kind == "residual" else "--", marker=".",
                    label=model)
        ax.set_yscale("log")
        ax.set_xlabel("conv layer index (input to output)")
        ax.set_title(f"gradient norms: {checkpoint}")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("‖∂loss/∂W‖₂")
    caption = ("L2 norm of the gradient of each conv layer's weight (one forward/backward, cross-entropy), "
               "plain (dashed) vs residual (solid). Vanishing gradients in the early layers of a deep plain "
               "net would show as a fall towards the left.")
    return NamedFigure("gradient_norms", caption, figure)


def response_figure(responses: pd.DataFrame) -> NamedFigure:
    """Std of each 3×3 layer's response (after BN, before addition/ReLU): layer order and sorted (Fig. 7)."""
    checkpoints = list(dict.fromkeys(responses["checkpoint"]))
    with sns.axes_style(STYLE):
        figure = Figure(figsize=(11, 3.6 * len(checkpoints)), layout="constrained")
        axes = figure.subplots(len(checkpoints), 2, squeeze=False)
    for row, checkpoint in zip(axes, checkpoints):
        data = responses[responses["checkpoint"] == checkpoint]
        for model, group in data.groupby("model", sort=False):
            style = "-" if group["kind"].iloc[0] == "residual" else "--"
            values = group.sort_values("layer_index")["value"].to_numpy()
            row[0].plot(np.arange(1, values.size + 1), values, style, label=model)
            row[1].plot(np.arange(1, values.size + 1), np.sort(values)[::-1], style, label=model)
        row[0].set_title(f"{checkpoint}: layer index (original order)")
        row[1].set_title(f"{checkpoint}: sorted by magnitude")
        for ax in row:
            ax.set_ylabel("std of response")
            # From 0 (std >= 0) with headroom: a flat line at 1 must not sit on the frame or get a 1e-5 offset axis.
            ax.set_ylim(0, float(data["value"].max()) * 1.15 or 1.0)
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.legend(fontsize=8)
        row[0].set_xlabel("3×3 layer index")
        row[1].set_xlabel("rank")
    caption = ("Standard deviation of each 3×3 layer's response, after BN and before the addition/ReLU, as "
               "the paper's Figure 7: in original layer order (left) and sorted in descending order (right). "
               "The paper finds residual responses generally smaller than plain ones in trained nets. At "
               "initialisation ('init') BN normalises with the batch's own statistics, so every response is "
               "about 1 (BN's gamma) by construction.")
    return NamedFigure("layer_responses", caption, figure)


def throughput_figure(throughput: pd.DataFrame) -> NamedFigure:
    """Training and inference images/s per model, one bar per device × setting (log scale)."""
    frame = latest(throughput, THROUGHPUT_SETTING + ["device_name"]).copy()
    frame["setting"] = (frame["device_name"].astype(str) + ", " + frame["precision"].astype(str)
                        + np.where(frame["channels_last"], ", channels-last", "")
                        + np.where(frame["compiled"], ", compiled", ""))
    modes = list(dict.fromkeys(frame["mode"]))
    with sns.axes_style(STYLE):
        figure = Figure(figsize=(6.5 * len(modes), 4.5), layout="constrained")
        axes = np.atleast_1d(figure.subplots(1, len(modes), squeeze=False)[0])
    for ax, mode in zip(axes, modes):
        sns.barplot(data=frame[frame["mode"] == mode], x="model", y="images_per_s", hue="setting",
                    errorbar=None, ax=ax)
        ax.set_yscale("log")
        ax.set_title(f"{mode}: images/s (batch {', '.join(str(int(b)) for b in sorted(frame['batch_size'].unique()))})")
        ax.legend(fontsize=7)
    caption = ("Images/s per model from `python -m benchmark profile` (latest measurement of each setting on "
               "each device); training = forward + backward + SGD step.")
    return NamedFigure("throughput", caption, figure)
