"""Assemble the report of one results folder: load, compute tables, draw figures, render, write.

A pure function of ``results/<suite>/`` and the paper's numbers (``benchmark.analysis.reference``): it never
trains and never reads anything else, so the same folder always gives the same report.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmark.analysis.claims import Claim, load_claims
from benchmark.analysis.reference import reproductions
from benchmark.analysis.verdicts import evaluate_claims
from benchmark.report import evaluations, figures, relatives, tables
from benchmark.report.formats import number as _num
from benchmark.report.formats import seed_stats
from benchmark.report.formats import signed as _signed
from benchmark.report.render import Block, Heading, Paragraph, Table, save_figure, to_html, to_markdown
from benchmark.report.scorecard import details_blocks, no_trials_blocks, scorecard_blocks
from benchmark.results.provenance import provenance_table
from benchmark.results.read import Results, load_packing, load_results, load_throughput


def default_out_dir(results_dir: Path, suite: str) -> Path:
    """``reports/<suite>`` beside the ``results/`` folder holding ``results_dir``, else under the CWD."""
    resolved = results_dir.resolve()
    if resolved.parent.name == "results":
        return resolved.parent.parent / "reports" / suite
    return Path("reports") / suite


def _seed_stats(frame: pd.DataFrame) -> list[str]:
    """Each row's n, mean, std, min, max over seeds as one cell."""
    return [seed_stats(*values) for values in zip(frame["n"], frame["mean"], frame["std"], frame["min"], frame["max"])]


def _table(frame: pd.DataFrame) -> Table:
    return Table(tuple(str(c) for c in frame.columns),
                 tuple(tuple("" if (isinstance(v, float) and math.isnan(v)) else str(v) for v in row)
                       for row in frame.itertuples(index=False)))


def _summary(results: Results) -> list[Block]:
    runs = results.runs
    counts = tables.status_counts(results)
    provenance = []
    for column, label in (("dataset", "datasets"), ("data_source", "data sources"), ("device", "devices"),
                          ("git_commit", "git commits"), ("torch_version", "torch")):
        if column not in runs:  # not a required column: an older or hand-made runs.csv may lack it
            continue
        values = sorted(v for v in runs[column].unique() if v)
        if values:
            provenance.append(f"{label}: {', '.join(values)}")
    return [Paragraph(f"Results folder: {results.path}. {len(runs)} trials: "
                      + ", ".join(f"{n} {status}" for status, n in counts.items()) + "."),
            *_recipes(runs),
            Paragraph("; ".join(provenance) + "." if provenance else "No provenance recorded."),
            Paragraph("All final errors are the last evaluation of each trial, never the best over time "
                      "(that would select on the test set). Errors are percentages.")]


def _recipes(runs: pd.DataFrame) -> list[Block]:
    """Which recipe the trials ran, saying when its learning-rate drops were scaled to a shorter run
    (`cifar10_he2015_scaled`, benchmark/suite/recipes.py): not the paper's 64k-iteration schedule."""
    if not {"recipe", "recipe_max_steps", "recipe_lr_milestones"} <= set(runs.columns):
        return []
    blocks: list[Block] = []
    columns = ["recipe", "recipe_max_steps", "recipe_lr_milestones"]
    for name, steps, milestones in runs[columns].drop_duplicates().itertuples(index=False):
        drops = " and ".join(f"{int(m):,}" for m in str(milestones).split()) or "none"
        text = f"Recipe {name}: {_num(float(steps), 0)} iterations, learning rate divided at {drops}"
        if str(name).endswith("_scaled"):
            text += (" — the paper's recipe (Section 4.2) with its drops scaled to this length, at the fractions "
                     "32k and 48k are of 64k; a shortened schedule of ours, not the paper's")
        blocks.append(Paragraph(text + "."))
    return blocks


def _missing(results: Results) -> list[Block]:
    frame = tables.missing_table(results)
    blocks: list[Block] = [Heading("What is missing")]
    if frame.empty:
        return blocks + [Paragraph("Nothing: every trial completed with the full number of evaluation points.")]
    counts = tables.status_counts(results)
    parts = [f"{counts[s]} {s}" for s in ("pending", "running", "failed", "diverged") if counts[s]]
    no_metrics = int((frame["n_points"] == 0).sum())
    blocks.append(Paragraph(
        f"{len(frame)} of {len(results.runs)} trials are not fully usable"
        + (f" ({', '.join(parts)})" if parts else "")
        + (f"; {no_metrics} have no metrics at all" if no_metrics else "")
        + ". Only completed trials enter the comparisons with the paper; curves show every trial that "
          "has metrics."))
    shown = frame.assign(error=frame["error"].str.slice(0, 120), seed=frame["seed"].map(lambda s: _num(s, 0)))
    return blocks + [_table(shown)]


def _reproduction(results: Results) -> list[Block]:
    blocks: list[Block] = [Heading("Reproduction of the paper's tables")]
    titles = {6: "Table 6: CIFAR-10 test error (%)", 2: "Table 2: ImageNet top-1 error (%), plain vs ResNet",
              3: "Table 3: ImageNet error (%), shortcut options and deeper nets"}
    any_rows = False
    for number in (6, 2, 3):
        frame = tables.reproduction_table(results, number)
        if frame.empty:
            continue
        any_rows = True
        tolerance = frame["tolerance"].iloc[0]
        blocks += [Heading(titles[number], 3), Paragraph(
            "Measured: mean ± sample std over the seeds that completed the paper's whole schedule (n, min–max). "
            f"Difference = measured − reference. Verdict: 'within ±{tolerance:.1f}' when |difference| ≤ "
            f"{tolerance:.1f} point; 'above' = worse than the reference, 'below' = better; 'not comparable' when no "
            "trial ran the whole schedule (the reference numbers are final errors; the measured ones are shown). "
            "Pre-activation nets are compared with He et al. 2016 ('Identity Mappings').")]
        columns = {"model": frame["variant"], "metric": frame["metric"], "data source": frame["data_source"],
                   "eval split": frame["eval_split"]}
        if number != 6:  # ImageNet: each row states how it was tested (the paper's Tables 2 and 3 are 10-crop)
            columns["test protocol"] = frame["protocol"]
        shown = pd.DataFrame({
            **columns, "iterations": frame["iterations"], "measured": _seed_stats(frame),
            "reference": frame["paper"].map(_num), "source": frame["reference"],
            "difference": frame["difference"].map(_signed), "verdict": frame["verdict"],
            "not counted": frame["excluded"], "note": frame["note"]})
        blocks.append(_table(shown))
    if not any_rows:
        blocks.append(Paragraph("No trial of these results matches a table of the paper."))
    return blocks


def _published(results: Results) -> list[Block]:
    present = set(zip(results.runs["model"], results.runs["dataset"]))
    frame = reproductions()
    frame = frame[[(m, d) in present for m, d in zip(frame["model"], frame["dataset"])]]
    if frame.empty:
        return []
    shown = frame[["source", "model", "shortcut", "metric", "value", "test_protocol", "note"]]
    return [Heading("Published reproductions (context, not the paper)", 3),
            Paragraph("Other people's numbers for the same models, each with its own recipe and evaluation; "
                      "listed for context only, never used for a verdict."),
            _table(shown.assign(value=shown["value"].map(_num)))]


def _shortcuts(results: Results) -> list[Block]:
    frame = tables.shortcut_table(results)
    if frame.empty:
        return []
    cells = frame.assign(cell=_seed_stats(frame))
    wide = cells.pivot(index=["dataset", "model"], columns="shortcut", values="cell").fillna("—")
    paper = cells.pivot(index=["dataset", "model"], columns="shortcut", values="paper")
    for option in wide.columns.tolist():
        wide[f"paper {option}"] = paper[option].map(_num)
    wide["iterations"] = cells.groupby(["dataset", "model"])["iterations"].agg(lambda v: " / ".join(dict.fromkeys(v)))
    wide.columns.name = None
    return [Heading("Shortcut options A/B/C side by side"),
            Paragraph("Final test error (%) per shortcut option, mean ± std over completed seeds (n, min–max): A "
                      "zero-padding, B projection where dimensions increase, C all projections (Section 3.3, "
                      "Table 3). The paper's numbers are ImageNet top-1 errors after its whole schedule; "
                      "'iterations' says how far these trials ran."),
            _table(wide.reset_index())]


def _convergence(results: Results) -> list[Block]:
    frame = tables.convergence_table(results)
    if frame.empty:
        return []

    def cell(row: pd.Series) -> str:
        if row["reached"] == 0:
            return "not reached"
        text = f"{row['mean_step']:.0f}"
        return text if row["reached"] == row["trials"] else f"{text} ({row['reached']}/{row['trials']} trials)"

    frame = frame.assign(cell=frame.apply(cell, axis=1),
                         column=frame["threshold"].map(lambda t: f"train error ≤ {t:g}%"))
    wide = frame.pivot(index=["dataset", "variant"], columns="column", values="cell")
    order = list(dict.fromkeys(frame["column"]))
    wide = wide[order].reset_index()
    wide = wide.set_index("variant").loc[list(dict.fromkeys(frame["variant"]))].reset_index()
    return [Heading("Convergence speed"),
            Paragraph("Iterations until the training error at an evaluation point first falls to each threshold "
                      "(mean over the trials that got there; 'k/n trials' when not all did)."),
            _table(wide[["dataset", "variant"] + order])]


def _run_throughput(results: Results) -> list[Block]:
    runs = tables.run_throughput_table(results)
    if runs.empty:
        return []
    return [Heading("Throughput"), Paragraph("Training images/s recorded by the trials (runs.csv)."),
            _table(runs.assign(mean=runs["mean"].map(lambda v: _num(v, 0)), std=runs["std"].map(lambda v: _num(v, 0))))]


def _hardware(throughput: pd.DataFrame, source: Path) -> list[Block]:
    hardware = tables.hardware_table(throughput)
    devices = [c for c in hardware.columns if c not in tables.THROUGHPUT_SETTING]
    shown = hardware.assign(**{d: hardware[d].map(lambda v: _num(v, 0)) for d in devices},
                            batch_size=hardware["batch_size"].map(lambda v: _num(v, 0)))
    return [Heading("Throughput per device"),
            Paragraph(f"Images/s per device from {source} (latest measurement of each setting)."), _table(shown)]


def _diagnostics(results: Results, folder: Path) -> list[Block]:
    if not results.analysis:
        return []
    blocks: list[Block] = [Heading("Degradation diagnostics"),
                           Paragraph(f"From {results.path / 'analysis'} (written by `python -m benchmark analyze`).")]
    if "gradient_norms" in results.analysis:
        blocks.append(save_figure(figures.gradient_figure(results.analysis["gradient_norms"]), folder))
    if "layer_responses" in results.analysis:
        blocks.append(save_figure(figures.response_figure(results.analysis["layer_responses"]), folder))
    return blocks


def _provenance(results: Results) -> list[Block]:
    return [Heading("Provenance"),
            Paragraph("Each trial as recorded when it ran (pending trials never ran): the code version is runs.csv's "
                      "code_version where recorded, else its git commit (12 characters; '-dirty' = uncommitted "
                      "changes, the exact code unknown)."),
            _table(provenance_table(results).assign(seed=lambda f: f["seed"].map(lambda s: _num(s, 0))))]


def build_report(results_dir: str | Path, out_dir: str | Path | None = None,
                 claims: tuple[Claim, ...] | None = None) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/*.png|svg`` for one results folder.

    ``out_dir`` defaults to ``reports/<suite>`` (see ``default_out_dir``); ``claims`` to the paper's
    (``benchmark/analysis/reference/claims.yaml``), judged in the scorecard atop the report. Returns the
    output folder. Raises ``ResultsError`` for a missing, empty or malformed results folder.
    """
    if _throughput_only(Path(results_dir)):
        return _build_throughput_report(Path(results_dir), out_dir)
    results = load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else default_out_dir(Path(results_dir), results.suite)
    folder = out / "figures"
    title = f"Reproduction report: {results.suite}"
    verdicts = evaluate_claims(results, claims if claims is not None else load_claims())
    blocks: list[Block] = scorecard_blocks(results, verdicts) + _summary(results) + _missing(results)
    paper = relatives.paper_nets(results)  # the paper's figures and tables are about its own nets
    curve_figures = figures.figure6(paper)
    if curve_figures:
        blocks.append(Heading("Training curves (Figure 6)"))
        blocks += [save_figure(named, folder) for named in curve_figures]
    depth_figures = figures.depth_figure(paper)
    if depth_figures:
        blocks.append(Heading("Final error against depth"))
        blocks += [save_figure(named, folder) for named in depth_figures]
    blocks += details_blocks(verdicts)
    blocks += _reproduction(paper) + _published(paper) + evaluations.section(results)
    blocks += _shortcuts(paper) + relatives.section(results, folder)
    blocks += _convergence(results) + _run_throughput(results)
    if results.throughput is not None and results.throughput_path is not None:
        blocks += _hardware(results.throughput, results.throughput_path)
    blocks += _diagnostics(results, folder) + _provenance(results)
    return _write(out, title, blocks)


def _write(out: Path, title: str, blocks: list[Block]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(to_markdown(title, blocks), encoding="utf-8")
    (out / "report.html").write_text(to_html(title, blocks), encoding="utf-8")
    return out


def _throughput_only(path: Path) -> bool:
    """`results/throughput/`: the profile's and/or the packing table, and no trials."""
    has_tables = (path / "throughput.csv").is_file() or (path / "packing.csv").is_file()
    return has_tables and not (path / "runs.csv").exists()


def _build_throughput_report(path: Path, out_dir: str | Path | None) -> Path:
    """The hardware side by side of `results/throughput/` (issue #6): throughput.csv from
    `python -m benchmark profile`, packing.csv from `python -m benchmark packing`."""
    out = Path(out_dir) if out_dir is not None else default_out_dir(path, path.name)
    throughput_path, packing_path = path / "throughput.csv", path / "packing.csv"
    blocks: list[Block] = no_trials_blocks("throughput measurements")
    if throughput_path.is_file():
        throughput = load_throughput(throughput_path)
        devices = sorted(throughput["device_name"].astype(str).unique())
        blocks += [
            Paragraph(f"{len(throughput)} measurements on {len(devices)} device(s): {', '.join(devices)}."),
            save_figure(figures.throughput_figure(throughput), out / "figures"),
            *_hardware(throughput, throughput_path),
        ]
    if packing_path.is_file():
        blocks += _packing(load_packing(packing_path), packing_path)
    return _write(out, f"Throughput report: {path.name}", blocks)


def _packing(packing: pd.DataFrame, source: Path) -> list[Block]:
    table = tables.packing_table(packing)
    shown = table.assign(**{c: table[c].map(lambda v: _num(v, 0)) for c in
                            ("batch_size", "trials", "images_per_s_total", "images_per_s_per_trial")},
                         **{c: table[c].map(_num) for c in ("speedup_vs_one", "efficiency")})
    return [Heading("Trials sharing one device"),
            Paragraph(f"From {source} (`python -m benchmark packing`): k trials, each given 1/k of the device "
                      "through Ray's fractional resources, train at once; speedup = their total images/s over "
                      "one trial alone, measured in the same run; efficiency = speedup / k."),
            _table(shown)]
