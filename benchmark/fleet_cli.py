"""`run` and `validate`: parse, load the suite, dispatch to the fleet and the report."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import yaml

from benchmark.errors import BenchmarkError
from benchmark.spec import load_suite


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run a suite's trials (Ray Tune by default) and write results + report")
    run.add_argument("suite", type=Path, help="a suite file, e.g. suites/degradation.yaml")
    _suite_options(run)
    run.add_argument("--executor", choices=("ray", "local"), default="ray", help="ray (default): a fleet on Ray Tune; local: in-process, one trial at a time")
    run.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: $RAY_ADDRESS, else a private local instance)")
    run.add_argument("--storage", default=None, help="where the Ray executor keeps checkpoints: a path every node sees, or a URI "
                     "such as s3://bucket/prefix (default: the suite's `storage`, else the results folder)")
    run.add_argument("--allow-changes", action="store_true", help="continue a results folder whose trials ran with other code "
                     "or data (the change is recorded in runs.csv)")
    run.add_argument("--results", type=Path, default=Path("results"), help="results root; the suite writes to RESULTS/<suite name>/ (default: results)")
    run.add_argument("--reports", type=Path, default=Path("reports"), help="reports root (default: reports)")
    run.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    run.set_defaults(func=cmd_run)

    validate = subparsers.add_parser("validate", help="check suite files against the schema")
    validate.add_argument("suites", type=Path, nargs="+", metavar="SUITE")
    _suite_options(validate)
    validate.set_defaults(func=cmd_validate)


def _suite_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a suite field, type-checked, e.g. --set recipe.max_steps=600 --set seeds=[0,1]")
    parser.add_argument("--smoke", action="store_true", help="shrink the suite to its `smoke` size (step cap, data subset)")
    parser.add_argument("--source", default=None, help="the dataset source, same as --set data.source=SOURCE (auto, torchvision, jpeg75, synthetic)")


def _overrides(args: argparse.Namespace) -> list[str]:
    return ([f"data.source={args.source}"] if args.source else []) + list(args.overrides)


def is_profile_config(path: Path) -> bool:
    """A `profile` grid (models × batch_sizes × ...) rather than a training suite (which has a grid)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False  # let the suite loader report it
    return isinstance(raw, dict) and "batch_sizes" in raw and "grid" not in raw


def cmd_validate(args: argparse.Namespace) -> int:
    failures = 0
    for path in args.suites:
        try:
            if is_profile_config(path):  # suites/throughput.yaml: the `profile` grid, not a training suite
                from benchmark.profile import load_config

                config = load_config(path)
                print(f"ok: {path}: profile config, {len(config.models)} models x {len(config.batch_sizes)} batch sizes")
                continue
            suite = load_suite(path, _overrides(args), smoke=args.smoke)
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"ok: {path}: suite {suite.name}, {len(suite.trials())} trials, {suite.recipe.max_steps} steps each")
    return 2 if failures else 0


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.fleet import run_suite

    suite = load_suite(args.suite, _overrides(args), smoke=args.smoke)
    # SIGTERM (a scheduler, `kill`) stops the fleet like Ctrl-C: running trials are marked
    # interrupted and every Ray process this run started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        statuses = run_suite(suite, results_root=args.results, executor=args.executor, ray_address=args.ray_address,
                             storage=args.storage, allow_changes=args.allow_changes)
    except BenchmarkError as exc:  # preflight: name the suite file like the loader does
        raise type(exc)(f"{args.suite}: {exc}") from None
    folder = args.results / suite.name
    counts = {status: list(statuses.values()).count(status) for status in sorted(set(statuses.values()))}
    print(f"suite {suite.name}: " + ", ".join(f"{n} {status}" for status, n in counts.items()) + f"; tables in {folder}")
    if not args.no_report:
        from benchmark.report import build_report  # imported here: pandas and seaborn are slow to import

        print(f"report: {build_report(folder, args.reports / suite.name)}")
    return 1 if "failed" in statuses.values() else 0
