"""Command line: parse and dispatch, nothing else.

Each sub-command lives with the module that does its job; that module exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments; returns an exit status or None).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmark import BenchmarkError

# Modules that contribute sub-commands, in the order `--help` lists them.
COMMAND_MODULES = (
    "benchmark.fleet.cli",              # run, export
    "benchmark.suite.cli",              # validate
    "benchmark.models.cli",             # list
    "benchmark.data.cli",               # data ...
    "benchmark.report.cli",             # report, analyze
    "benchmark.analysis.cli",           # evaluate
    "benchmark.throughput.cli",         # profile, packing
    "benchmark.throughput.gpu_check",   # gpu-check
    "benchmark.hardware.cli",           # hardware
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark",
        description="Reproduce and measure He et al. 2016, 'Deep Residual Learning for Image Recognition'.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C is one line and status 130 at any moment, importing the commands (torch, Ray) included.
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        status = args.func(args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
