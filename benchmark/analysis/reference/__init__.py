"""The paper's reported numbers, as data, and published reproductions beside them.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, pp. 770-778
(arXiv:1512.03385). Every number lives in a CSV next to this file, one row per (table, method,
metric), so a reader can check it against the paper without reading code:

- ``paper.csv``: Tables 1 (FLOPs as multiply-adds), 2, 3, 4 (ImageNet val error, %) and 6
  (CIFAR-10 test error, %). ResNet-110 in Table 6 appears twice: 6.43 is the *best* of 5 runs
  (``statistic=best``: a selection on the test set) and 6.61 ± 0.16 is their mean
  (``statistic=mean``). The paper gives no number for plain nets on CIFAR-10 (only the curves
  of Figures 1 and 6), so there is none here.
- ``reproductions.csv``: other people's results, **never** the paper's: akamaster's CIFAR-10
  table and torchvision's single-crop ImageNet accuracies turned into errors (100 - accuracy;
  the reported accuracy is kept in ``reported_as``).
- ``identity_mappings.csv``: He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks",
  ECCV 2016 (arXiv:1603.05027), Table 3: CIFAR-10 errors of nets with full pre-activation units,
  the numbers a ``preact`` trial is compared with (same columns as ``paper.csv``).
- ``claims.yaml``: the paper's findings as data (read by ``benchmark.analysis.claims``).
- ``relatives.csv``: the paper's relatives' numbers (Identity Mappings, Wide ResNets, ResNeXt,
  DenseNet; published parameter counts), read through ``benchmark.analysis.reference.relatives``, which also
  labels Table 6's Highway/FitNet rows and ``identity_mappings.csv`` by source.

Errors are percentages (0-100), like the paper's tables and like ``results/<suite>/*.csv``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import pandas as pd

__all__ = ["paper_table", "paper_numbers", "reproductions", "identity_mappings", "reference_error",
           "PAPER_TABLES"]

#: The tables of the paper held as data (5, ensembles on the test server, and 7-14, detection,
#: are out of the suite's scope).
PAPER_TABLES = (1, 2, 3, 4, 6)

# The paper's default shortcut per model when a caller does not name one: option A on CIFAR-10
# (Section 4.2) and for the 18/34-layer ImageNet nets of Table 2; option B for the bottleneck nets
# (Table 3: "50/101/152-layer ResNets ... use option B").
_BOTTLENECK_DEPTHS = (50, 101, 152)


@lru_cache(maxsize=None)
def _read(name: str) -> pd.DataFrame:
    with resources.files(__name__).joinpath(name).open("r", encoding="utf-8") as handle:
        frame = pd.read_csv(handle, dtype={"shortcut": "string", "model": "string"})
    return frame


def paper_numbers() -> pd.DataFrame:
    """Every number held from the paper, one row per (table, method, metric), tidy."""
    return _read("paper.csv").copy()


def paper_table(n: int) -> pd.DataFrame:
    """The rows of the paper's Table ``n`` (one of ``PAPER_TABLES``), in the paper's order."""
    if n not in PAPER_TABLES:
        raise ValueError(f"the paper's Table {n} is not held as data; tables held: {PAPER_TABLES}")
    frame = paper_numbers()
    return frame[frame["table"] == n].reset_index(drop=True)


def reproductions(source: str | None = None) -> pd.DataFrame:
    """Published reproductions (not the paper), optionally only those of one ``source``."""
    frame = _read("reproductions.csv").copy()
    if source is not None:
        frame = frame[frame["source"] == source].reset_index(drop=True)
    return frame


def identity_mappings() -> pd.DataFrame:
    """He et al. 2016 ("Identity Mappings") numbers for pre-activation nets, tidy like ``paper_numbers``."""
    return _read("identity_mappings.csv").copy()


def _default_shortcut(model: str, dataset: str) -> str | None:
    if model.startswith("plain"):
        return None
    if dataset == "imagenet":
        digits = "".join(ch for ch in model if ch.isdigit())
        return "B" if digits and int(digits) in _BOTTLENECK_DEPTHS else "A"
    return "A"


def reference_error(
    model: str,
    dataset: str = "cifar10",
    shortcut: str | None = None,
    metric: str = "top1_error",
    *,
    table: int | None = None,
    prefer_mean: bool = True,
    preact: bool = False,
) -> float | None:
    """The paper's error (%) for ``model`` on ``dataset``, or None when the paper gives none.

    ``model`` uses the registry's names (``resnet56``, ``plain34``, ``resnet50``); ``shortcut``
    ("A"|"B"|"C") defaults to the paper's choice for that model and is ignored for plain nets.
    ``table`` picks a table (default: 6 for CIFAR-10; for ImageNet, 10-crop Table 2 or 3, whichever
    holds the number, before multi-scale Table 4). With ``prefer_mean`` (default) a number given as
    best-of-n and mean ± std returns the mean: a mean over our seeds is compared with the paper's
    mean, not with its best run (ResNet-110: 6.61, not 6.43).

    ``preact`` looks the model up in ``identity_mappings.csv`` instead (He et al. 2016, whose
    pre-activation units the paper does not have); ``shortcut`` and ``table`` are not matched there.
    """
    if preact:
        rows = identity_mappings()
        rows = rows[(rows["model"] == model) & (rows["dataset"] == dataset) & (rows["metric"] == metric)]
        return None if rows.empty else float(rows["value"].iloc[0])
    frame = paper_numbers()
    rows = frame[(frame["model"] == model) & (frame["dataset"] == dataset) & (frame["metric"] == metric)]
    if model.startswith("plain"):
        chosen_shortcut = None
    else:
        chosen_shortcut = shortcut if shortcut is not None else _default_shortcut(model, dataset)
        rows = rows[rows["shortcut"] == chosen_shortcut]
    if table is not None:
        rows = rows[rows["table"] == table]
    else:
        order = (6,) if dataset == "cifar10" else (2, 3, 4)
        for candidate in order:
            if (rows["table"] == candidate).any():
                rows = rows[rows["table"] == candidate]
                break
        else:
            rows = rows.iloc[0:0]
    if rows.empty:
        return None
    preferred = "mean" if prefer_mean else "best"
    if (rows["statistic"] == preferred).any():
        rows = rows[rows["statistic"] == preferred]
    value = float(rows["value"].iloc[0])
    return None if math.isnan(value) else value
