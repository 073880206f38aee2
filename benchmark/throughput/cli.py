"""`python -m benchmark profile` and `packing`: parse, merge with --config, dispatch to
benchmark.throughput.profile and benchmark.throughput.packing."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark import BenchmarkError

if TYPE_CHECKING:
    import torch

SWITCH = {"both": (False, True), "on": (True,), "off": (False,)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="measure training/inference images/s, peak memory and fraction of peak FLOP/s",
        description="Measure throughput for each model x batch size x precision x memory format x "
        "compilation x mode and append the rows to <out>/throughput.csv. Flags override --config.",
    )
    parser.add_argument("--config", type=Path, help="a profile YAML, e.g. suites/throughput.yaml")
    parser.add_argument("--models", nargs="+", metavar="NAME")
    parser.add_argument("--batch-sizes", nargs="+", type=int, metavar="N")
    parser.add_argument("--precisions", nargs="+", metavar="P", help="fp32 bf16 fp16")
    parser.add_argument("--channels-last", choices=tuple(SWITCH))
    parser.add_argument("--compile", choices=tuple(SWITCH))
    parser.add_argument("--mode", nargs="+", dest="modes", metavar="MODE", help="train infer")
    parser.add_argument("--warmup", type=int, metavar="N")
    parser.add_argument("--iters", type=int, metavar="N")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--out", type=Path, default=Path("results/throughput"))
    parser.add_argument("--strict", action="store_true",
                        help="bf16 on a CPU without native bf16 is an error (default: measured as fp32, said in one line)")
    parser.set_defaults(func=main)

    packing = subparsers.add_parser(
        "packing",
        help="measure k trials sharing one device (Ray fractional resources) against one alone",
        description="For each k, k Ray actors each given 1/k of the device train the model with the fleet's "
        "step and device loader at the same time; the total images/s is compared with one trial alone, "
        "measured in the same run. Rows are appended to <out>/packing.csv.",
    )
    packing.add_argument("--model", default="resnet20", metavar="NAME")
    packing.add_argument("--trials", nargs="+", type=int, metavar="K",
                         help="how many trials share the device (default: 1 4 on a GPU, 1 and the core count on a CPU)")
    packing.add_argument("--batch-size", type=int, default=128, metavar="N")
    packing.add_argument("--precision", default="bf16", help="fp32 bf16 fp16 (default bf16, as suites/degradation.yaml)")
    packing.add_argument("--channels-last", choices=("on", "off"), default="on")
    packing.add_argument("--compile", choices=("on", "off"), help="default: on for a GPU, off for a CPU")
    packing.add_argument("--steps", type=int, default=200, metavar="N", help="timed steps per trial")
    packing.add_argument("--warmup", type=int, default=20, metavar="N", help="untimed steps per trial first")
    packing.add_argument("--rounds", type=int, default=3, metavar="N",
                         help="alternating rounds over the k's; each row is the median (default 3)")
    packing.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    packing.add_argument("--out", type=Path, default=Path("results/throughput"))
    packing.set_defaults(func=main_packing)


def main_packing(args: argparse.Namespace) -> int:
    from benchmark.throughput import packing, profile

    device = _device(args.device)
    config = packing.PackingConfig(
        model=args.model, trials=tuple(args.trials) if args.trials else None, batch_size=args.batch_size, precision=args.precision,
        channels_last=args.channels_last == "on", compile=None if args.compile is None else args.compile == "on",
        steps=args.steps, warmup=args.warmup, rounds=args.rounds,
    )
    rows = packing.run_packing(config, args.out, device)
    print(profile.format_table(rows, packing.SUMMARY_COLUMNS))
    print(f"appended {len(rows)} rows to {args.out / 'packing.csv'} ({rows[0]['device_name']})")
    return 0


def main(args: argparse.Namespace) -> int:
    # imported here: torch is slow to import and `--help` needs none
    from benchmark.suite.profile_grid import ProfileConfig, load_config
    from benchmark.throughput import profile

    config = load_config(args.config) if args.config else ProfileConfig()
    overrides = {
        "models": tuple(args.models) if args.models else None,
        "batch_sizes": tuple(args.batch_sizes) if args.batch_sizes else None,
        "precisions": tuple(args.precisions) if args.precisions else None,
        "channels_last": SWITCH[args.channels_last] if args.channels_last else None,
        "compile": SWITCH[args.compile] if args.compile else None,
        "modes": tuple(args.modes) if args.modes else None,
        "warmup": args.warmup,
        "iters": args.iters,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    device = _device(args.device)
    rows = profile.run_profile(config, args.out, device, strict=args.strict)
    if rows:
        print(profile.format_table(rows))
        print(f"appended {len(rows)} rows to {args.out / 'throughput.csv'} ({rows[0]['device_name']})")
    else:
        print("nothing measured: every combination was skipped on this device")
    return 0


def _device(name: str) -> "torch.device":
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchmarkError(f"--device {name!r}: expected auto, cpu or cuda[:index]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError(f"--device {name!r}: no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        raise BenchmarkError(f"--device {name!r}: expected auto, cpu or cuda[:index]")
    return device
