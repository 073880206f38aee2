"""The precision a device trains fastest in: bf16 only where the device computes it natively."""

from __future__ import annotations

from benchmark import BenchmarkError
from benchmark.hardware.identity import Hardware

# The precisions a trial, a profile row or a packing run can ask for (`auto` picks one of them).
PRECISIONS = ("fp32", "bf16", "fp16")


def fast_precision(hardware: Hardware) -> str:
    """The precision this device trains fastest in among those it computes natively: bf16 autocast
    where bf16 is native (1.4-1.7x fp32 for the CIFAR nets on the AVX-512 development machine, one
    thread), fp32 elsewhere (emulated bf16 ran 9-12x slower than fp32: docs/measured.md, "bf16 against fp32 on a CPU")."""
    return "bf16" if hardware.native_bf16 else "fp32"


class PrecisionError(BenchmarkError):
    """A precision this device cannot run (or, with --strict, not natively)."""


def resolve_precision(requested: str, hardware: Hardware, strict: bool = False) -> tuple[str, str]:
    """(precision to use, a one-line note or "") for `requested` on `hardware`.

    `auto` is `fast_precision`. bf16 on a CPU without native bf16 becomes fp32 with a note (with
    `strict`, a PrecisionError instead). fp16 off CUDA and unknown names are errors naming them.
    """
    known = ("auto", *PRECISIONS)
    if requested not in known:
        raise PrecisionError(f"precision {requested!r}: expected one of {', '.join(known)}")
    if requested == "auto":
        return fast_precision(hardware), ""
    if requested == "fp16" and hardware.kind != "cuda":
        raise PrecisionError(f"precision 'fp16' needs a CUDA device; this is {hardware.describe()} (use fp32 or bf16)")
    if requested == "bf16" and hardware.kind == "cpu" and not hardware.native_bf16:
        why = (f"precision 'bf16': this CPU ({hardware.name}, {hardware.cpu_capability}) has no native bf16, "
               "where bf16 is emulated and runs several times slower than fp32")
        if strict:
            raise PrecisionError(f"{why} (--strict)")
        return "fp32", f"{why}; using fp32 instead (--strict makes this an error)"
    return requested, ""
