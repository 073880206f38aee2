"""Whether a suite's trials fit this machine, for a run that trains here (no cluster address).

A trial asking for more CPUs than the machine has can never be placed: Ray would say so only after
starting (about 16 s on a 2-core machine). `validate` and `run` say it at once when the target is
this machine; on a cluster the fleet's preflight checks every node instead.
"""

from __future__ import annotations

from benchmark import SuiteError
from benchmark.hardware import cores
from benchmark.suite.spec import Resources


def check_fits_this_machine(resources: Resources, machine_cores: int | None = None) -> None:
    """A one-line `SuiteError` when one trial (all of a data-parallel trial's workers) asks for more
    CPUs than this machine's `machine_cores` (default: the cores this process may use)."""
    available = cores() if machine_cores is None else machine_cores
    if resources.cpu * resources.workers <= available + 1e-9:
        return
    if resources.workers > 1:
        raise SuiteError(f"resources.workers: a trial asks for {resources.workers} workers x {resources.cpu:g} CPUs, but "
                         f"this machine has {available} cores; use --set resources.workers=N with N x "
                         f"{resources.cpu:g} <= {available}, or give a cluster's --ray-address")
    raise SuiteError(f"resources.cpu: a trial asks for {resources.cpu:g} CPUs, but this machine has {available} cores; "
                     f"use --set resources.cpu=N with N <= {available}, or give a cluster's --ray-address")
