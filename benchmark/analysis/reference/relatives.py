"""The relatives' published numbers, as data, beside the paper's: each labelled by its source paper and
the table it is read from, and the one number a trial of a model is compared with, its own paper's.

``relatives.csv`` holds, one row per (source, table, method, metric): Identity Mappings (He et al.
2016) Tables 1-4, the Wide ResNet paper's Tables 4-6, ResNeXt's Table 7 and DenseNet's Table 2 (C10+:
CIFAR-10 with the standard augmentation), errors in percent and published parameter counts. One copy
of each number: the ResNet paper's Table 6 rows for Highway and FitNet stay in ``paper.csv`` and
Identity Mappings' pre-activation rows of Table 3 in ``identity_mappings.csv``; ``relatives_numbers``
lists them here too, labelled like the rest.

Columns: ``source`` (a key of ``SOURCES``: whose result), ``table`` (where it is read: the source's own
table, or "he2015 Table 6" when read from the paper that cites it), ``method`` (the paper's label),
``model`` (our registry name when we build that net, else empty), ``preact_option`` (the number is
for a He et al. 2015 net built with ``preact=True``), ``depth``, ``dataset``, ``metric``
(top1_error | parameters), ``value``, ``std``, ``n_runs``, ``statistic`` (single | median | mean |
best), ``compare`` (the one number a trial of that model is compared with), ``note``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

from benchmark.analysis.reference import identity_mappings, paper_table

SOURCES: dict[str, str] = {
    "he2015": "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016 (arXiv:1512.03385)",
    "he2016": "He, Zhang, Ren, Sun. Identity Mappings in Deep Residual Networks. ECCV 2016 (arXiv:1603.05027)",
    "srivastava2015": "Srivastava, Greff, Schmidhuber. Training Very Deep Networks. NIPS 2015 (arXiv:1507.06228)",
    "romero2015": "Romero, Ballas, Kahou, Chassang, Gatta, Bengio. FitNets: Hints for Thin Deep Nets. ICLR 2015",
    "zagoruyko2016": "Zagoruyko, Komodakis. Wide Residual Networks. BMVC 2016 (arXiv:1605.07146)",
    "xie2017": "Xie, Girshick, Dollár, Tu, He. Aggregated Residual Transformations for Deep Neural Networks. "
               "CVPR 2017 (arXiv:1611.05431)",
    "huang2017": "Huang, Liu, van der Maaten, Weinberger. Densely Connected Convolutional Networks. CVPR 2017 "
                 "(arXiv:1608.06993)",
}
SHORT_NAMES: dict[str, str] = {
    "he2015": "He et al. 2015 (ResNet)", "he2016": "He et al. 2016 (Identity Mappings)",
    "srivastava2015": "Srivastava et al. 2015 (Highway)", "romero2015": "Romero et al. 2015 (FitNets)",
    "zagoruyko2016": "Zagoruyko & Komodakis 2016 (WRN)", "xie2017": "Xie et al. 2017 (ResNeXt)",
    "huang2017": "Huang et al. 2017 (DenseNet)",
}
# The registry's names of the ResNet paper's own nets (benchmark.models.cifar / imagenet); every
# other name is a relative (tests/test_relatives_reference.py checks this against the registry).
PAPER_MODEL = re.compile(r"(plain|resnet)\d+")
# Table 6's rows for other methods (paper.csv, model empty) that we build: (method, depth) -> model.
TABLE_6_MODELS = {("Highway", 19): "highway19", ("Highway", 32): "highway32"}
TABLE_6_SOURCES = {"Highway": "srivastava2015", "FitNet": "romero2015"}


def is_paper_model(model: str) -> bool:
    """Whether ``model`` is one of the ResNet paper's own nets (plain or ResNet, CIFAR or ImageNet)."""
    return PAPER_MODEL.fullmatch(str(model)) is not None


@lru_cache(maxsize=None)
def _read() -> pd.DataFrame:
    with resources.files("benchmark.analysis.reference").joinpath("relatives.csv").open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={"model": "string", "table": "string", "note": "string"})
    return frame


def _table_6_rows() -> pd.DataFrame:
    """Table 6's Highway and FitNet errors from paper.csv, labelled as the relatives' rows are."""
    table = paper_table(6)
    table = table[table["method"].isin(TABLE_6_SOURCES)]
    models = [TABLE_6_MODELS.get((m, int(d))) if pd.notna(d) else None for m, d in zip(table["method"], table["depth"])]
    # A trial's mean over seeds is compared with the mean, never with a best run (Highway-19: 7.72, not 7.54).
    compare = [model is not None and statistic != "best" for model, statistic in zip(models, table["statistic"])]
    return pd.DataFrame({
        "source": table["method"].map(TABLE_6_SOURCES), "table": "he2015 Table 6", "method": table["method"],
        "model": pd.array(models, dtype="string"), "preact_option": False, "depth": table["depth"],
        "dataset": table["dataset"], "metric": table["metric"], "value": table["value"], "std": table["std"],
        "n_runs": table["n_runs"], "statistic": table["statistic"], "compare": compare,
        "note": table["note"].astype("string"),
    })


def _identity_mappings_rows() -> pd.DataFrame:
    """Identity Mappings' Table 3 pre-activation rows (identity_mappings.csv), labelled likewise.

    ResNet-110's is the number its ``preact`` trials are compared with; ResNet-164's and -1001's
    are compared with Table 4 (a median of 5 runs; for 1001 the mean ± std beside it).
    """
    table = identity_mappings()
    preact_option = table["model"].map(is_paper_model).astype(bool)
    return pd.DataFrame({
        "source": "he2016", "table": "Table " + table["table"].astype(str), "method": table["method"],
        "model": table["model"].astype("string"), "preact_option": preact_option, "depth": table["depth"],
        "dataset": table["dataset"], "metric": table["metric"], "value": table["value"], "std": table["std"],
        "n_runs": table["n_runs"], "statistic": table["statistic"], "compare": preact_option,
        "note": table["note"].astype("string"),
    })


def relatives_numbers() -> pd.DataFrame:
    """Every number held for the relatives, tidy: relatives.csv, Table 6's Highway/FitNet rows and
    Identity Mappings' pre-activation rows of Table 3."""
    return pd.concat([_table_6_rows(), _identity_mappings_rows(), _read()], ignore_index=True)


@dataclass(frozen=True)
class OwnNumber:
    """The published number a trial is compared with, and where it comes from."""

    value: float
    std: float | None
    n_runs: int | None
    statistic: str  # single | median | mean | best
    source: str  # a key of SOURCES
    table: str
    note: str

    @property
    def label(self) -> str:
        return f"{SHORT_NAMES[self.source]}, {self.table}"


def own_number(model: str, preact: bool = False, metric: str = "top1_error") -> OwnNumber | None:
    """The CIFAR-10 number of ``model``'s own paper (None when its paper gives none).

    The ResNet paper's nets are compared with its Table 6 (the mean of 5 runs for ResNet-110), their
    pre-activation versions with Identity Mappings; every relative with the one row of its own
    paper marked ``compare`` (a mean where one is given, as our seeds are averaged).
    """
    if is_paper_model(model) and not preact:
        rows = paper_table(6)
        rows = rows[(rows["model"] == model) & (rows["metric"] == metric) & (rows["shortcut"] == "A")]
        rows = rows[rows["statistic"] == "mean"] if (rows["statistic"] == "mean").any() else rows
        source = "he2015"
        table = "Table 6"
    else:
        frame = relatives_numbers()
        rows = frame[(frame["model"] == model) & (frame["preact_option"] == preact) & (frame["metric"] == metric)
                     & frame["compare"]]
        source = str(rows["source"].iloc[0]) if len(rows) else ""
        table = str(rows["table"].iloc[0]) if len(rows) else ""
    if rows.empty:
        return None
    row = rows.iloc[0]
    std = float(row["std"]) if pd.notna(row["std"]) else None
    n_runs = int(row["n_runs"]) if pd.notna(row["n_runs"]) else None
    return OwnNumber(float(row["value"]), std, n_runs, str(row["statistic"]), source, table,
                     "" if pd.isna(row["note"]) else str(row["note"]))


def published_parameters(model: str) -> float | None:
    """The parameter count ``model``'s paper publishes (rounded as printed, e.g. 36.5e6), or None."""
    frame = _read()
    rows = frame[(frame["model"] == model) & (frame["metric"] == "parameters")]
    value = float(rows["value"].iloc[0]) if len(rows) else math.nan
    return None if math.isnan(value) else value
