"""Run a suite's trials as a fleet: Ray Tune (default) or in-process, with resume.

Order of work, so that bad input fails before anything is written: static checks (this machine's
cores, when no cluster is named); take the results folder's lock (a second run is refused at once;
a folder the lock created is removed again if nothing gets written); connect to Ray (probing a
cluster address first) and check every trial fits a node; open and probe the checkpoint storage;
resolve the data once; then read the folder's tables and refuse a configuration, code, data or
checkpoint storage that differs from what made them (unless `allow_changes`).

Resume is by the results folder: a trial whose row in `runs.csv` says `completed` or `diverged` is
not run again; any other continues from its recorded checkpoint. A trial with rows but no
checkpoint left restarts clean, its earlier rows set aside (never spliced into a new curve).
Ctrl-C or SIGTERM marks running trials `interrupted` and stops every Ray process we started.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmark import ResultsError, SuiteError
from benchmark.fleet.dataset import SuiteData, resolve_data
from benchmark.fleet.executor import Executor, FleetPlan
from benchmark.fleet.final_weights import keep_final_weights
from benchmark.fleet.local import LocalExecutor
from benchmark.fleet.lock import FolderLock
from benchmark.fleet.preflight import (check_loader, check_placement, check_precision, check_resumable,
                                       check_storage_reaches, driver_request)
from benchmark.fleet.progress import FleetView
from benchmark.fleet.recorder import FleetRecorder, print_line
from benchmark.fleet.ray_cluster import check_address
from benchmark.fleet.storage import DEFAULT_STORAGE, open_storage, redact
from benchmark.results.provenance import CodeVersion, code_version
from benchmark.suite.recipes import recipe_differences
from benchmark.results.tables import FINISHED, ResultsWriter
from benchmark.suite.machine import check_fits_this_machine
from benchmark.suite.spec import Suite, Trial, fit_suite_precision


def run_suite(
    suite: Suite,
    results_root: Path = Path("results"),
    executor: str = "ray",
    ray_address: str | None = None,
    results_dir: Path | None = None,
    storage: str | None = None,
    allow_changes: bool = False,
    out: Callable[[str], None] = print_line,
    code: CodeVersion | None = None,
    cwd: Path | None = None,
    trainable: Callable[..., None] | None = None,
    strict: bool = False,
    view: FleetView | None = None,
) -> dict[str, str]:
    """Run every unfinished trial of `suite`; returns {trial_id: status}.

    `storage`: where the Ray executor's checkpoints live (default: the suite's `storage`, else
    `<results folder>/_state/ray`). `code`: the code version to record (default: this checkout's).
    `trainable`: a stand-in for the Ray trial function (tests of placement). `strict`: bf16 on a
    CPU without native bf16 is an error instead of fp32 (`benchmark.suite.spec.fit_suite_precision`).
    `view`: the live view of a terminal (benchmark/fleet/progress.py); None: lines only.
    """
    folder = Path(results_dir) if results_dir else Path(results_root) / suite.name
    check_loader(suite)
    check_precision(suite)
    suite, note = fit_suite_precision(suite, strict)  # `auto` and emulated bf16 become what is fast here
    if note:
        out(note)
    storage = storage or suite.storage
    if executor == "local" and storage:
        raise SuiteError(f"storage {redact(storage)}: checkpoint storage is the Ray executor's; --executor local keeps "
                         "checkpoints in the results folder")
    if executor == "ray":
        ray_address = check_address(ray_address or os.environ.get("RAY_ADDRESS") or None)
        if ray_address is None:  # a private instance on this machine: say at once what cannot fit here
            check_fits_this_machine(suite.resources)
    # The folder's lock first, before Ray and the data: a second run on the folder is refused at once.
    with FolderLock(folder) as lock, ExitStack() as cleanup:  # cleanup closes Ray (and its code snapshot)
        if lock.stale_holder:
            out(f"{folder}: the last run there (pid {lock.stale_holder.get('pid')}) ended without "
                "releasing its lock; taking over")
        if executor == "ray":
            runner, code, storage_label = _ray_executor(cleanup, suite, folder, ray_address, storage, code, trainable)
        else:
            _check_local_gpus(suite)
            runner, code, storage_label = LocalExecutor(folder / "_state"), code or code_version(), "local"
        data = resolve_data(suite, cwd or Path.cwd())
        run_fields = {"git_commit": code.git_commit, "code_version": code.code_version,
                      "data_fingerprint": data.fingerprint, "storage": storage_label}
        return _run_in_folder(suite, folder, runner, data, code, run_fields, allow_changes, out, view)


def _ray_executor(cleanup: ExitStack, suite: Suite, folder: Path, address: str | None, storage: str | None,
                  code: CodeVersion | None, trainable: Callable[..., None] | None) -> tuple[Executor, CodeVersion, str]:
    """Connect to Ray, check every trial fits a node, open and probe the checkpoint storage; returns
    the executor, the code version and the storage as runs.csv records it (the folder's own storage
    by its place in the folder, DEFAULT_STORAGE; any other redacted)."""
    from benchmark.fleet.ray_cluster import connect
    from benchmark.fleet.ray_executor import RayExecutor

    connection = connect(address)
    cleanup.callback(connection.close)
    code = code or code_version(shipped=connection.package)  # the copy of the package the trials run
    nodes = connection.nodes()
    at_once = check_placement(suite.resources, nodes, connection.where)
    own = (folder / DEFAULT_STORAGE).resolve()
    is_own = storage is None or ("://" not in storage and Path(storage).expanduser().resolve() == own)
    if is_own:
        check_storage_reaches(nodes, connection.driver_address(), connection.where)
    store = open_storage(str(own) if is_own else storage)
    store.probe()
    label = DEFAULT_STORAGE if is_own else store.uri
    return RayExecutor(store, label, max_concurrent=at_once, trainable=trainable, driver=driver_request(nodes)), code, label


def _run_in_folder(suite: Suite, folder: Path, runner: Executor, data: SuiteData, code: CodeVersion,
                   run_fields: dict[str, Any], allow_changes: bool, out: Callable[[str], None],
                   view: FleetView | None = None) -> dict[str, str]:
    """With the folder's lock held: check it may continue, register new trials, run the rest."""
    trials = suite.trials()
    writer = ResultsWriter(folder, out=out)
    changes = check_resumable(writer, trials, run_fields, allow_changes)
    if changes:
        run_fields["allowed_changes"] = changes
        out(f"{folder}: continuing with changes (--allow-changes, recorded): {changes}")
    _register_new_trials(writer, suite, trials)
    pending = [t for t in trials if writer.status(t.trial_id) not in FINISHED]
    out(f"suite {suite.name}: {len(trials)} trials ({len(trials) - len(pending)} already finished), results in {folder}")
    resume = _checkpoints_to_resume(writer, pending, runner, out)
    plan = FleetPlan(state_dir=writer.state_dir.resolve(), data=data, package_hash=code.package_hash, resume=resume,
                     written={trial_id: max(writer.last_step.get(trial_id, 0), 0) for trial_id in resume})
    recorder = FleetRecorder(writer, trials, out=out, run_fields=run_fields, view=view, storage=runner.storage)
    if pending:
        try:
            runner.run(pending, recorder, plan)
        except KeyboardInterrupt:
            stopped = recorder.interrupted()
            out(f"suite {suite.name}: interrupted; {len(stopped)} running trial(s) marked interrupted "
                "(run the same command to resume)")
            raise
        except ResultsError:  # the writer failed (a full disk): the trials it was recording stopped with it
            try:
                recorder.interrupted()
            except ResultsError:
                pass  # no room even for that: runs.csv keeps them `running`, which resumes the same way
            raise
        finally:
            recorder.close()
        for trial in pending:  # any final weights the recorder could not keep as the trial completed
            keep_final_weights(writer, trial.trial_id, out, runner.storage)
    return {t.trial_id: writer.status(t.trial_id) for t in trials}


def _check_local_gpus(suite: Suite) -> None:
    import torch

    if suite.resources.workers > 1:
        raise SuiteError(f"resources.workers: {suite.resources.workers} data-parallel workers run under Ray Train; "
                         "use the Ray executor (the default), or --set resources.workers=1 with --executor local")
    if suite.resources.gpu > 0 and torch.cuda.device_count() == 0:
        raise SuiteError(f"resources.gpu: the suite asks for {suite.resources.gpu:g} GPU per trial but this "
                         "machine has none; use --set resources.gpu=0 to train on the CPU")


def _register_new_trials(writer: ResultsWriter, suite: Suite, trials: list[Trial]) -> None:
    new = [t for t in trials if t.trial_id not in writer.runs]
    recorded = suite.model_dump(mode="json")
    if recorded.get("storage"):
        recorded["storage"] = redact(recorded["storage"])  # a URI's credentials are never written
    for trial in new:
        writer.write_trial_config(trial.trial_id, {"trial": trial.model_dump(mode="json"), "suite": recorded})
    if new:
        writer.update_runs({t.trial_id: {**_run_fields(t), "status": "pending"} for t in new})


def _checkpoints_to_resume(writer: ResultsWriter, pending: list[Trial], runner: Executor,
                           out: Callable[[str], None]) -> dict[str, str]:
    """{trial_id: checkpoint location} for trials that can resume; a trial whose rows exist but
    whose checkpoint is gone restarts clean, its rows set aside (never spliced), and we say so."""
    resume = {}
    for trial in pending:
        row = writer.runs.get(trial.trial_id, {})
        found = runner.checkpoint_of(trial.trial_id, row)
        if found is not None:
            resume[trial.trial_id] = found
            continue
        location = row.get("checkpoint") or ""
        if writer.last_step.get(trial.trial_id, -1) > 0:
            moved = writer.set_aside_rows(trial.trial_id, after_step=0, reason=f"checkpoint {location or '(none)'} gone")
            writer.update_run(trial.trial_id, steps="", checkpoint="", final_train_error="", final_eval_error="",
                              final_eval_top5_error="", final_eval_loss="")
            out(f"{trial.trial_id}: its checkpoint {location or '(none recorded)'} is gone; it restarts from "
                f"step 0 and its {moved} earlier rows moved to {writer.discarded_path.name}")
    return resume


def _run_fields(trial: Trial) -> dict[str, Any]:
    return {
        "suite": trial.suite,
        "model": trial.model,
        "family": trial.family,
        "kind": trial.kind,
        "depth": trial.depth,
        "shortcut": trial.shortcut,
        "preact": trial.preact,
        "seed": trial.seed,
        "dataset": trial.data.dataset,
        "split": trial.data.split,
        # what makes a final error comparable with the paper's, or not (benchmark/analysis/trials.py)
        "train_subset": trial.data.train_subset,
        "eval_subset": trial.data.eval_subset,
        "recipe_changes": "; ".join(f"{field} {named} -> {value}"
                                    for field, (named, value) in recipe_differences(trial.recipe.flat()).items()),
        "loader": trial.loader,
        "precision": trial.precision,
        "channels_last": trial.channels_last,
        "compile": trial.compile,
        "tf32": trial.tf32,
        "deterministic": trial.deterministic,
        "eval_ten_crop": trial.eval_ten_crop,
        "eval_every": trial.eval_every,
        **trial.recipe.flat(),
    }
