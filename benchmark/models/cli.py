"""``python -m benchmark list``: every registered model with its complexity, as the paper
reports it (parameters as in Table 6, forward mult-adds as in Table 1's "FLOPs"), and for the
relatives their architecture and its width (WRN's k, ResNeXt's d), cardinality or growth rate."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from benchmark.models.complexity import named_complexity
from benchmark.models.registry import list_models, model_info

COLUMNS = (
    "name", "family", "architecture", "paper", "kind", "depth", "block", "shortcut", "width", "cardinality",
    "growth_rate", "resolution", "num_classes", "parameters", "multiply_adds",
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list the models with their parameters and mult-adds",
        description="List every registered model with its paper defaults, parameters and "
        "forward multiply-adds per image at its input size (conv + fc, Table 1's convention).",
    )
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="an aligned table for people (default), or csv / json for machines",
    )
    parser.set_defaults(func=run_list)


def model_rows() -> list[dict[str, object]]:
    """One row per model: its ModelInfo and exact counts with the paper's default options."""
    rows = []
    for name in list_models():
        info = model_info(name)
        # Shapes only: the meta device makes counting ResNet-152 or ResNet-1202 free.
        parameters, multiply_adds = named_complexity(name)
        rows.append(
            {
                "name": name,
                "family": info.family,
                "architecture": info.architecture,
                "paper": info.paper,
                "kind": info.kind,
                "depth": info.depth,
                "block": info.block,
                "shortcut": info.default_shortcut,
                "width": info.width,
                "cardinality": info.cardinality,
                "growth_rate": info.growth_rate,
                "resolution": info.input_size[1],
                "num_classes": info.num_classes,
                "parameters": parameters,
                "multiply_adds": multiply_adds,
            }
        )
    return rows


def format_parameters(parameters: int) -> str:
    # Table 6's rounding: 0.27M below a million, 1.7M / 19.4M above.
    millions = parameters / 1e6
    return f"{millions:.2f}M" if millions < 1 else f"{millions:.1f}M"


def format_multiply_adds(multiply_adds: int) -> str:
    return f"{multiply_adds / 1e9:.2f}G" if multiply_adds >= 1e9 else f"{multiply_adds / 1e6:.1f}M"


def run_list(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        print_table(rows)
    return 0


def print_table(rows: list[dict[str, object]]) -> None:
    header = ("model", "family", "architecture", "kind", "depth", "block", "shortcut", "width", "cardinality",
              "growth", "input", "params", "exact", "mult-adds")
    cells = [
        (
            str(row["name"]),
            str(row["family"]),
            str(row["architecture"]),
            str(row["kind"]),
            str(row["depth"]),
            str(row["block"]),
            str(row["shortcut"] or "-"),
            str(row["width"] or "-"),
            str(row["cardinality"] or "-"),
            str(row["growth_rate"] or "-"),
            f"{row['resolution']}x{row['resolution']}",
            format_parameters(int(row["parameters"])),
            f"{row['parameters']:,}",
            format_multiply_adds(int(row["multiply_adds"])),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    numeric = {"depth", "width", "cardinality", "growth", "params", "exact", "mult-adds"}
    for line in [header, *cells]:
        padded = (c.rjust(w) if h in numeric else c.ljust(w) for c, w, h in zip(line, widths, header))
        print("  ".join(padded).rstrip())
    print(
        "\nshortcut: the paper's default option (A zero-pad, B projection where dimensions change; "
        "plain nets have none, and\nthe relatives marked - have the shortcuts their own paper fixes).\n"
        "architecture: resnet = the paper's nets; the relatives are compared with their own paper's numbers.\n"
        "width: WRN's widening factor k, ResNeXt's bottleneck width d; cardinality: ResNeXt's groups C; "
        "growth: DenseNet's k.\nmult-adds: forward, one image at the input size, conv + fc layers "
        "(Table 1's FLOPs)."
    )
