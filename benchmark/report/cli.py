"""The ``report`` and ``analyze`` sub-commands: parse, call, print where the output went."""

from __future__ import annotations

import argparse
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
    from benchmark.analysis.claims import load_claims
    from benchmark.report.build import build_report

    claims = load_claims(args.claims) if args.claims is not None else None  # checked before anything is written
    out = build_report(args.results, args.out, claims)
    print(f"report written to {out / 'report.html'} and {out / 'report.md'}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    # Imported here: diagnostics needs torch and the models, which `report` alone does not.
    from benchmark.analysis.diagnostics import analyze, write_analysis
    from benchmark.report.figures import gradient_figure, response_figure
    from benchmark.report.render import save_figure

    gradients, responses = analyze(args.models, args.checkpoint or (), args.steps or (),
                                   batch_size=args.batch_size, seed=args.seed, source=args.source)
    written = write_analysis(gradients, responses, args.out)  # the tables, then their figures
    for named in (gradient_figure(gradients), response_figure(responses)):
        save_figure(named, args.out)
        written += [args.out / f"{named.name}.png", args.out / f"{named.name}.svg"]
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report", help="write report.md, report.html and figures for a results folder",
        description="Compare a results folder with the paper: a scorecard of the paper's claims, Figure 6 curves, "
                    "error against depth, Tables 6/2/3 with verdicts, shortcut options, convergence, throughput, "
                    "provenance, and what is missing.")
    report.add_argument("results", type=Path, help="results folder, e.g. results/degradation")
    report.add_argument("--out", type=Path, default=None,
                        help="output folder (default: reports/<suite> beside results/, else under the current folder)")
    report.add_argument("--claims", type=Path, default=None,
                        help="a claims file judged in the scorecard (default: the paper's, benchmark/analysis/reference/claims.yaml)")
    report.set_defaults(func=_report)

    analyze = subparsers.add_parser(
        "analyze", help="gradient norms and layer responses (Fig. 7) of plain vs residual nets",
        description="Degradation diagnostics. Every model is measured at initialisation on a seeded synthetic "
                    "batch; --checkpoint adds trained states (a torch.save'd dict with key 'model' holding a "
                    "state_dict, as training writes them, or the final weights a results folder keeps, "
                    "weights/<trial>.safetensors). Write to results/<suite>/analysis for the report "
                    "to include them.")
    analyze.add_argument("--models", nargs="+", required=True, metavar="MODEL", help="e.g. plain56 resnet56")
    analyze.add_argument("--checkpoint", nargs="+", type=Path, metavar="PATH",
                         help="one checkpoint per --models entry, same order (repeat a model for several)")
    analyze.add_argument("--steps", nargs="+", type=int, metavar="STEP",
                         help="the training step of each checkpoint (default: the checkpoint's 'step')")
    analyze.add_argument("--batch-size", type=int, default=32, help="synthetic batch size (default 32)")
    analyze.add_argument("--seed", type=int, default=0, help="seed for the weights and the batch (default 0)")
    analyze.add_argument("--source", default=None,
                         help="probe with real CIFAR-10 test images from this source (auto, jpeg75, torchvision, "
                              "synthetic) instead of synthetic noise")
    analyze.add_argument("--out", type=Path, required=True, help="output folder, e.g. results/<suite>/analysis")
    analyze.set_defaults(func=_analyze)
