"""Run a suite's trials as a fleet: Ray Tune (default) or in-process, with resume.

Resume is by the results folder: a trial whose row in `runs.csv` says `completed` or `diverged` is
not run again; any other trial starts from its checkpoint in `_state/checkpoints/` if it has one.
Only this (driver) process writes the tables; trials report rows to it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.errors import BenchmarkError, SuiteError
from benchmark.results import FINISHED, RUN_COLUMNS, ResultsWriter
from benchmark.spec import Suite, Trial


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def print_line(line: str) -> None:
    """The console view: flushed at once, so that progress shows up in logs and pipes too."""
    print(line, flush=True)


class FleetRecorder:
    """Turns trial reports into table rows and a live console view (state, step, errors, ETA)."""

    def __init__(self, writer: ResultsWriter, trials: list[Trial], out: Callable[[str], None] = print_line) -> None:
        self.writer = writer
        self.trials = {trial.trial_id: trial for trial in trials}
        self.out = out
        self.started = time.monotonic()
        self.steps_at_start = {t.trial_id: self._written_step(t.trial_id) for t in trials}
        self.current_step = dict(self.steps_at_start)

    def _written_step(self, trial_id: str) -> int:
        return max(self.writer.last_step.get(trial_id, 0), 0)

    def start(self, trial_id: str) -> None:
        if self.writer.status(trial_id) != "running":
            self.writer.update_run(trial_id, status="running", started_at=self.writer.runs[trial_id].get("started_at") or now())

    def result(self, trial_id: str, row: dict[str, Any]) -> None:
        trial = self.trials[trial_id]
        self.writer.add_metrics(trial_id, row)
        self.current_step[trial_id] = int(row["step"])
        # The row's own runs-table columns (status, data source, provenance, images/s, wall time),
        # then the latest evaluation as the trial's final metrics.
        fields = {key: row[key] for key in RUN_COLUMNS if key in row and key != "trial_id"}
        status = fields.setdefault("status", "running")
        fields.update(
            steps=int(row["step"]),
            final_train_error=row["train_error"],
            final_eval_error=row["eval_error"],
            final_eval_top5_error=row["eval_top5_error"],
            final_eval_loss=row["eval_loss"],
        )
        if status in FINISHED:
            fields["finished_at"] = now()
        self.writer.update_run(trial_id, **fields)
        self.out(
            f"{trial_id:<22} {status:<9} step {int(row['step']):>6}/{trial.recipe.max_steps:<6} "
            f"train {row['train_error']:6.2f}%  {row.get('eval_split', 'eval')} {row['eval_error']:6.2f}%  "
            f"{row['images_per_s']:7.0f} img/s   {self.progress()}"
        )

    def failed(self, trial_id: str, message: str) -> None:
        lines = message.strip().splitlines()
        error = lines[-1][:500] if lines else "failed"  # a traceback's last line says what went wrong
        self.writer.update_run(trial_id, status="failed", error=error, finished_at=now())
        self.out(f"{trial_id:<22} failed: {error}   {self.progress()}")

    def progress(self) -> str:
        def work(steps: dict[str, int]) -> float:
            return sum(trial_work(t, steps[i]) for i, t in self.trials.items())

        total = work({i: t.recipe.max_steps for i, t in self.trials.items()})
        done = work(self.current_step)
        finished = sum(1 for i in self.trials if self.writer.status(i) in FINISHED + ("failed",))
        new_work = done - work(self.steps_at_start)
        elapsed = time.monotonic() - self.started
        eta = _duration((total - done) * elapsed / new_work) if new_work > 0 else "?"
        return f"| suite {finished}/{len(self.trials)} trials, {100 * done / max(total, 1):.0f}% done, ETA {eta}"


def trial_work(trial: Trial, steps: int | None = None) -> int:
    """Relative cost of `steps` training steps of `trial` (default: all of them): steps × depth,
    since a step of a 56-layer net costs about 56/20 of a 20-layer one (Table 6's nets differ only
    in depth). The ETA weighs trials by it; the Ray executor starts the costliest first."""
    max_steps = trial.recipe.max_steps
    return min(max_steps if steps is None else steps, max_steps) * trial.depth


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


# -------------------------------------------------------------------------------- preflight


def check_data(suite: Suite) -> None:
    """Resolve the dataset before anything starts, so a missing one is one clear error."""
    from benchmark.errors import DataError

    try:
        if suite.data.dataset == "cifar10":
            from benchmark.data import load_cifar10

            load_cifar10(source=suite.data.source, split=suite.data.split, root=suite.data.root)
        else:
            from benchmark.data.imagenet import check_imagenet_folder

            check_imagenet_folder(suite.data.root, suite.loader)
    except DataError as exc:
        raise DataError(f"data.source={suite.data.source}: {exc} (in a suite: data.root or --source)") from None


def check_loader(suite: Suite) -> None:
    if suite.loader == "ffcv":
        try:
            import ffcv  # noqa: F401
        except ImportError:
            raise SuiteError(
                "loader: 'ffcv' needs the ffcv extra: apt-get install pkg-config libturbojpeg0-dev libopencv-dev, "
                f"then pip install '.[ffcv]' (after torch); or choose loader: {'torch' if suite.data.dataset == 'imagenet' else 'device'}"
            ) from None


def check_gpus(suite: Suite, available: float, where: str) -> None:
    """Tune leaves trials that ask for absent GPUs pending forever: refuse before starting."""
    if suite.resources.gpu > 0 and suite.resources.gpu > available:
        raise SuiteError(
            f"resources.gpu: the suite asks for {suite.resources.gpu} GPU per trial but {where} has {available:g}; "
            "use --set resources.gpu=0 to train on the CPU"
        )
    if suite.precision == "fp16" and suite.resources.gpu == 0:
        raise SuiteError("precision: fp16 needs a GPU (resources.gpu > 0); use fp32 or bf16 on the CPU")


def check_resumable(writer: ResultsWriter, trials: list[Trial]) -> None:
    """A results folder continues only the configuration that made it."""
    for trial in trials:
        stored = writer.trial_config(trial.trial_id)
        if stored is None:
            continue
        current = trial.model_dump(mode="json")
        try:  # through today's schema, so that a field added since (with its default) is no change
            before = Trial.model_validate(stored.get("trial", {})).model_dump(mode="json")
        except ValueError:
            before = stored.get("trial", {})
        diff = sorted(_diff_keys(before, current))
        if diff:
            raise SuiteError(
                f"{writer.folder}: trial {trial.trial_id} was run with a different configuration "
                f"(differs in {', '.join(diff[:4])}); use --results DIR for a new folder or delete the old one"
            )


def _diff_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = set(old) | set(new)
        return [d for k in sorted(keys) for d in _diff_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".")]


# -------------------------------------------------------------------------------- executors


def run_local(trials: list[Trial], recorder: FleetRecorder, writer: ResultsWriter) -> None:
    """In-process, one trial after another: for debugging and tests."""
    from benchmark.train import train_trial

    for trial in trials:
        recorder.start(trial.trial_id)
        try:
            train_trial(
                trial,
                report=functools.partial(recorder.result, trial.trial_id),
                checkpoint_path=writer.checkpoint_path(trial.trial_id),
                beton_dir=writer.state_dir / "beton",
            )
        except BenchmarkError as exc:
            recorder.failed(trial.trial_id, str(exc))
        except Exception as exc:  # a crashing trial must not take the fleet down
            recorder.failed(trial.trial_id, f"{type(exc).__name__}: {exc}")


def run_suite(
    suite: Suite,
    results_root: Path = Path("results"),
    executor: str = "ray",
    ray_address: str | None = None,
    results_dir: Path | None = None,
    out: Callable[[str], None] = print_line,
) -> dict[str, str]:
    """Run every unfinished trial of `suite`; returns {trial_id: status}."""
    trials = suite.trials()
    folder = Path(results_dir) if results_dir else Path(results_root) / suite.name
    check_loader(suite)
    if executor == "ray":
        from benchmark.ray_executor import cluster_gpus

        gpus, where = cluster_gpus(ray_address)
    else:
        import torch

        gpus, where = float(torch.cuda.device_count()), "this machine"
    check_gpus(suite, gpus, where)
    check_data(suite)
    writer = ResultsWriter(folder)
    check_resumable(writer, trials)

    pending = [t for t in trials if writer.status(t.trial_id) not in FINISHED]
    for trial in trials:
        if trial.trial_id not in writer.runs:
            writer.write_trial_config(trial.trial_id, {"trial": trial.model_dump(mode="json"), "suite": suite.model_dump(mode="json")})
            writer.update_run(trial.trial_id, **_run_fields(trial), status="pending")
    skipped = len(trials) - len(pending)
    out(f"suite {suite.name}: {len(trials)} trials ({skipped} already finished), results in {folder}")
    recorder = FleetRecorder(writer, trials, out=out)
    if pending:
        if executor == "ray":
            from benchmark.ray_executor import run_ray

            run_ray(pending, recorder, writer, ray_address)
        else:
            run_local(pending, recorder, writer)
    return {t.trial_id: writer.status(t.trial_id) for t in trials}


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
        "loader": trial.loader,
        "precision": trial.precision,
        "channels_last": trial.channels_last,
        "compile": trial.compile,
        "eval_ten_crop": trial.eval_ten_crop,
        **trial.recipe.flat(),
    }
