"""`validate`: check suite files (training suites and profile grids) without running anything, and
that every trial fits this machine's cores unless a cluster is named; and the suite options
(`--set`, `--smoke`, `--source`) that `run` shares."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from benchmark import BenchmarkError


def register(subparsers: argparse._SubParsersAction) -> None:
    validate = subparsers.add_parser("validate", help="check suite files against the schema")
    validate.add_argument("suites", type=Path, nargs="+", metavar="SUITE")
    add_suite_options(validate)
    validate.add_argument("--ray-address", default=None,
                          help="the Ray cluster the suites will run on (default: $RAY_ADDRESS, else this machine, whose "
                          "cores every trial must then fit in)")
    validate.set_defaults(func=cmd_validate)


def add_suite_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite field, type-checked, e.g. --set recipe.max_steps=600 --set seeds=[0,1]")
    parser.add_argument("--smoke", action="store_true", help="shrink the suite to its `smoke` size (step cap, data subset)")
    parser.add_argument("--source", default=None, help="the dataset source, same as --set data.source=SOURCE (auto, torchvision, jpeg75, synthetic)")


def suite_overrides(args: argparse.Namespace) -> list[str]:
    return ([f"data.source={args.source}"] if args.source else []) + list(args.overrides)


def is_profile_config(path: Path) -> bool:
    """A `profile` grid (models × batch_sizes × ...) rather than a training suite (which has a grid)."""
    from benchmark.suite.yaml_file import read_yaml  # here: every command's parser is built at start-up

    try:
        raw = read_yaml(path)  # bounded and safe, like every suite file
    except BenchmarkError:
        return False  # let the suite loader report it
    return "batch_sizes" in raw and "grid" not in raw


def cmd_validate(args: argparse.Namespace) -> int:
    # The suite schema is imported where it is used: it needs pydantic, which a bare GPU machine
    # lacks, and the other commands (gpu-check among them) must still start there.
    from benchmark.suite.machine import check_fits_this_machine
    from benchmark.suite.profile_grid import load_config
    from benchmark.suite.spec import load_suite

    on_this_machine = not (args.ray_address or os.environ.get("RAY_ADDRESS"))
    failures = 0
    for path in args.suites:
        try:
            if is_profile_config(path):  # suites/throughput.yaml: the `profile` grid, not a training suite
                config = load_config(path)
                print(f"ok: {path}: profile config, {len(config.models)} models x {len(config.batch_sizes)} batch sizes")
                continue
            suite = load_suite(path, suite_overrides(args), smoke=args.smoke)
            if on_this_machine:  # `run` would refuse it after starting Ray; say it now
                try:
                    check_fits_this_machine(suite.resources)
                except BenchmarkError as exc:
                    raise type(exc)(f"{path}: {exc}") from None
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"ok: {path}: suite {suite.name}, {len(suite.trials())} trials, {suite.recipe.max_steps} steps each")
    return 2 if failures else 0
