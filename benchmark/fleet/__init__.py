"""The fleet: a suite's trials run by an executor, their reports written by one recorder.

- `runner.run_suite`: preflight, the results folder's lock, resume, dispatch;
- `recorder.FleetRecorder`: the single writer of the results folder, and the console view;
- executors (`executor.Executor`): `local.LocalExecutor` (in-process) and
  `ray_executor.RayExecutor` (Ray Tune, on a private instance or a cluster; the trial side is
  `ray_trial`, the connection `ray_cluster`, checkpoint storage `storage`);
- `dataset`: the data resolved once for every trial; `preflight`: checks before anything starts.
"""

from benchmark.fleet.runner import run_suite

__all__ = ["run_suite"]
