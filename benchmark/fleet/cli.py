"""`run`: parse, load the suite, dispatch to the fleet, then the report and the scorecard."""

from __future__ import annotations

import argparse
import os
import signal
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark import BenchmarkError
from benchmark.suite.cli import add_suite_options, suite_overrides

if TYPE_CHECKING:  # the schema needs pydantic, which a bare GPU machine lacks (gpu-check must start there)
    from benchmark.suite.spec import Suite


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run a suite's trials (Ray Tune by default) and write results + report")
    run.add_argument("suite", type=Path, help="a suite file, e.g. suites/degradation.yaml")
    add_suite_options(run)
    run.add_argument("--executor", choices=("ray", "local"), default="ray", help="ray (default): a fleet on Ray Tune; local: in-process, one trial at a time")
    run.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: $RAY_ADDRESS, else a private local instance)")
    run.add_argument("--storage", default=None, help="where the Ray executor keeps checkpoints: a path every node sees, or a URI "
                     "such as s3://bucket/prefix (default: the suite's `storage`, else the results folder)")
    run.add_argument("--allow-changes", action="store_true", help="continue a results folder whose trials ran with other code "
                     "or data (the change is recorded in runs.csv)")
    run.add_argument("--results", type=Path, default=Path("results"), help="results root; the suite writes to RESULTS/<suite name>/ (default: results)")
    run.add_argument("--reports", type=Path, default=Path("reports"), help="reports root (default: reports)")
    run.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    run.add_argument("--budget", default=None, metavar="DURATION",
                     help="a CPU suite sized by time: measure each model's step here, then train every trial for one "
                     "number of iterations (the recipe's drops scaled) so the suite ends within DURATION, e.g. 30m, 1h")
    run.add_argument("--plan-only", action="store_true", help="with --budget: print the plan and stop before training")
    run.add_argument("--strict", action="store_true",
                     help="bf16 on a CPU without native bf16 is an error (default: fp32 instead, said in one line)")
    run.set_defaults(func=cmd_run)

    export = subparsers.add_parser(
        "export", help="a completed trial's net as model.safetensors + model.json (its model card)",
        description="For each completed trial of a results folder (or the one named), write OUT/<trial_id>/model.safetensors "
                    "(the final weights and the training mean image) and model.json (the model card: how to build and feed "
                    "the net, its recipe, data, errors, code version, hardware, a one-line loading snippet), from the "
                    "folder's weights/ or, where a trial's weights were never kept, from its checkpoint.")
    export.add_argument("results", type=Path, help="a results folder, e.g. results/degradation")
    export.add_argument("--trial", default=None, metavar="ID", help="one trial (default: every completed one)")
    export.add_argument("--out", type=Path, required=True, help="output folder")
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from benchmark.fleet.final_weights import export_trials

    written = export_trials(args.results, args.out, args.trial)
    for path in written:
        print(path)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.fleet.progress import console_view
    from benchmark.fleet.runner import run_suite
    from benchmark.suite.spec import load_suite

    suite = load_suite(args.suite, suite_overrides(args), smoke=args.smoke)
    if args.plan_only and not args.budget:
        raise BenchmarkError("--plan-only prints the plan of a --budget; give --budget DURATION")
    if args.budget:
        suite = _planned(suite, args)
        if args.plan_only:
            return 0
    # SIGTERM (a scheduler, `kill`) stops the fleet like Ctrl-C: running trials are marked
    # interrupted and every Ray process this run started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    view = console_view()  # a live table on a terminal; in logs, one line per evaluation
    try:
        with view or nullcontext():
            statuses = run_suite(suite, results_root=args.results, executor=args.executor, ray_address=args.ray_address,
                                 storage=args.storage, allow_changes=args.allow_changes, strict=args.strict, view=view)
    except BenchmarkError as exc:  # preflight: name the suite file like the loader does
        raise type(exc)(f"{args.suite}: {exc}") from None
    folder = args.results / suite.name
    counts = {status: list(statuses.values()).count(status) for status in sorted(set(statuses.values()))}
    print(f"suite {suite.name}: " + ", ".join(f"{n} {status}" for status, n in counts.items()) + f"; tables in {folder}")
    from benchmark.analysis.claims import load_claims
    from benchmark.fleet.figure7 import measure_layer_responses

    if line := measure_layer_responses(folder, suite, load_claims()):  # the scorecard's Figure 7 row, over seeds
        print(line)
    if not args.no_report:
        from benchmark.report import build_report  # imported here: pandas and seaborn are slow to import

        print(f"report: {build_report(folder, args.reports / suite.name)}")
    from benchmark.report.scorecard import print_scorecard  # the paper's claims, judged on what just ran

    print_scorecard(folder)
    return 1 if "failed" in statuses.values() else 0


def _planned(suite: Suite, args: argparse.Namespace) -> Suite:
    """The suite sized to `--budget` on this machine (benchmark/fleet/planner.py): trials side by side as
    the executor runs them, each with the threads it will have."""
    import torch

    from benchmark.fleet.planner import BudgetError, parse_budget, plan_suite
    from benchmark.hardware import cores

    budget_s = parse_budget(args.budget)
    if args.ray_address or os.environ.get("RAY_ADDRESS"):
        raise BudgetError("--budget sizes a suite to this machine; it cannot plan for a Ray cluster (--ray-address, RAY_ADDRESS)")
    if args.executor == "local":
        slots, threads = 1, torch.get_num_threads()  # one trial at a time, with the process's threads
    else:
        slots, threads = max(1, int(cores() // suite.resources.cpu)), max(1, int(suite.resources.cpu))
    return plan_suite(suite, budget_s, args.results / suite.name, slots=slots, threads=threads, strict=args.strict)
