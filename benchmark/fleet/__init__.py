"""The fleet: a suite's trials run by an executor, their reports written by one recorder.

- `cli`: the `run` command; `planner`: a CPU suite sized to a time budget and to the claims it can decide;
- `runner.run_suite`: preflight, the results folder's lock, resume, dispatch;
- `recorder.FleetRecorder`: the single writer of the results folder, and the console view;
- executors (`executor.Executor`): `local.LocalExecutor` (in-process) and
  `ray_executor.RayExecutor` (Ray Tune, on a private instance or a cluster; the trial side is
  `ray_trial` and, for data-parallel trials, `ray_ddp`; the connection `ray_cluster`, checkpoint
  storage `storage`);
- `dataset`: the data resolved once for every trial; `preflight`: checks before anything starts.

Nothing is imported here: the CLI imports `benchmark.fleet.cli` to build its parser for every
command, and the suite schema (pydantic) must not load then (`gpu-check` starts without it).
"""
