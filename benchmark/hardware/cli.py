"""`python -m benchmark hardware`: this machine's identity, its fast path and its peak (benchmark/hardware/)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "hardware", help="this machine's CPU/GPU identity, the precision it trains fastest in, and its peak FLOP/s",
        description="Print what every result row records about this machine, the precision `auto` picks here, "
        "and the peak FLOP/s that `profile` divides by (a CPU's is a short probe, cached per machine and thread count).")
    parser.add_argument("--probe", action="store_true", help="measure the CPU peak again (the cache keeps the best seen)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import torch

    from benchmark import hardware

    devices = [torch.device("cpu")] + [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    for device in devices:
        identity = hardware.identify(device)
        if args.probe and identity.kind == "cpu":
            hardware.probe_and_cache(identity)
        peaks = {p: hardware.peak_tflops(identity, p) for p in ("fp32", "bf16")}
        print(identity.describe())
        print(f"  fast path: {hardware.fast_precision(identity)} autocast, channels-last"
              + ("" if identity.native_bf16 else " (bf16 would be emulated here: several times slower than fp32)"))
        print("  peak: " + ", ".join(f"{p} {v * 1000:,.0f} GFLOP/s" if v else f"{p} unknown" for p, v in peaks.items())
              + (" (datasheet)" if identity.kind == "cuda" else f" (measured with {identity.threads} threads, best seen)"))
    return 0
