"""Benchmark: a report for 100 trials x 200 evaluation points builds in under 15 s on 2 CPU cores.

Runs only with ``--benchmark-only`` (pyproject's addopts skip benchmarks otherwise):

    .venv/bin/python -m pytest tests/benchmarks/test_bench_report.py --benchmark-only
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchmark.report import build_report
from benchmark.results.read import METRICS_COLUMNS

BUDGET_S = 15.0
RUNS_HEADER = (
    "trial_id,suite,model,family,kind,depth,shortcut,preact,seed,status,steps,final_train_error,final_eval_error,"
    "final_eval_top5_error,final_eval_loss,eval_split,images_per_s,wall_s,dataset,data_source,split,loader,precision,"
    "recipe,recipe_lr,recipe_momentum,recipe_weight_decay,recipe_batch_size,recipe_max_steps,recipe_lr_milestones,"
    "recipe_warmup_lr,recipe_warmup_until_error,device,git_commit,torch_version,python_version,hostname,started_at,"
    "finished_at,error"
).split(",")


def write_synthetic_results(folder: Path, seeds: int = 10, points: int = 200, seed: int = 0) -> int:
    """Plain and residual nets at five depths x ``seeds`` seeds, ``points`` evaluations each; return the trial count.

    Curves decay exponentially towards a depth-dependent floor (deeper plain nets worse, deeper
    residual nets better: the paper's Figure 6 shape), with noise; a few trials are not completed.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    steps = np.arange(1, points + 1) * 320
    statuses = ["completed"] * 97 + ["running", "diverged", "failed"]
    with (folder / "runs.csv").open("w", newline="") as runs_file, (folder / "metrics.csv").open("w", newline="") as metrics_file:
        runs, metrics = csv.DictWriter(runs_file, RUNS_HEADER, lineterminator="\n"), csv.writer(metrics_file, lineterminator="\n")
        runs.writeheader()
        metrics.writerow(METRICS_COLUMNS)
        index = 0
        for kind in ("plain", "residual"):
            for depth in (20, 32, 44, 56, 110):
                model = f"{'plain' if kind == 'plain' else 'resnet'}{depth}"
                floor = 8.0 + (depth - 20) * (0.05 if kind == "plain" else -0.01)
                for s in range(seeds):
                    status = statuses[index % len(statuses)]
                    index += 1
                    count = points if status == "completed" else points // 2
                    train = floor * 0.3 + 80 * np.exp(-steps[:count] / 8000) + rng.normal(0, 0.5, count)
                    test = floor + 80 * np.exp(-steps[:count] / 8000) + rng.normal(0, 0.5, count)
                    train, test = np.clip(train, 0, 100), np.clip(test, 0, 100)
                    trial = f"{model}-s{s}"
                    for i in range(count):
                        metrics.writerow([trial, int(steps[i]), round(steps[i] * 128 / 50000, 3), 0.1, round(train[i] / 40, 4),
                                          round(train[i], 3), round(test[i] / 40, 4), round(test[i], 3), round(test[i] / 4, 3),
                                          "test", 420, i * 30.0])
                    done = status == "completed"
                    runs.writerow({
                        "trial_id": trial, "suite": "bench", "model": model, "family": "cifar", "kind": kind,
                        "depth": depth, "shortcut": "A" if kind == "residual" else "", "preact": False, "seed": s,
                        "status": status, "steps": int(steps[count - 1]),
                        "final_train_error": round(train[-1], 3) if done else "",
                        "final_eval_error": round(test[-1], 3) if done else "",
                        "final_eval_top5_error": round(test[-1] / 4, 3) if done else "", "final_eval_loss": "",
                        "eval_split": "test", "images_per_s": 420, "wall_s": count * 30.0, "dataset": "cifar10",
                        "data_source": "jpeg75", "split": "train50k", "loader": "device", "precision": "fp32",
                        "recipe": "cifar10_he2015", "recipe_lr": 0.1, "recipe_momentum": 0.9,
                        "recipe_weight_decay": 0.0001, "recipe_batch_size": 128, "recipe_max_steps": int(steps[-1]),
                        "recipe_lr_milestones": "32000 48000", "recipe_warmup_lr": "", "recipe_warmup_until_error": "",
                        "device": "cpu", "git_commit": "bench", "torch_version": "2.14.1", "python_version": "3.11",
                        "hostname": "bench", "started_at": "", "finished_at": "",
                        "error": "" if status in ("completed", "running") else status})
    return index


def test_report_100_trials_200_points(benchmark, tmp_path: Path) -> None:
    folder = tmp_path / "results" / "bench"
    assert write_synthetic_results(folder) == 100
    out = tmp_path / "reports" / "bench"
    result = benchmark.pedantic(build_report, args=(folder, out), rounds=1, iterations=1, warmup_rounds=0)
    assert result == out and (out / "report.html").is_file()
    markdown = (out / "report.md").read_text()
    assert "97 completed, 1 running, 0 pending, 1 diverged, 1 failed" in markdown
    elapsed = benchmark.stats.stats.max
    assert elapsed < BUDGET_S, f"report took {elapsed:.1f} s for 100 trials x 200 points (budget {BUDGET_S} s)"


SCORECARD_BUDGET_S = 1.0


def test_scorecard_adds_under_a_second(benchmark, tmp_path: Path) -> None:
    """The scorecard's own work (judge every claim, build its blocks and its console text) on the same
    100 trials x 200 points, and the report built with and without it, side by side (alternating,
    3 rounds each, medians). The goal is on the scorecard's own time; the difference of the two
    report times says the same with the noise of drawing every figure twice."""
    import statistics
    import time

    from benchmark.analysis.claims import load_claims
    from benchmark.analysis.verdicts import evaluate_claims
    from benchmark.report.scorecard import scorecard_blocks, scorecard_text
    from benchmark.results.read import load_results

    folder = tmp_path / "results" / "bench"
    write_synthetic_results(folder)
    results, claims = load_results(folder), load_claims()

    def scorecard() -> int:
        verdicts = evaluate_claims(results, claims)
        scorecard_blocks(results, verdicts)
        scorecard_text(results, verdicts)
        return len(verdicts)

    assert benchmark.pedantic(scorecard, rounds=5, iterations=1, warmup_rounds=1) >= 4
    alone = benchmark.stats.stats.median
    with_it, without = [], []
    for round_ in range(3):
        for times, chosen in ((without, ()), (with_it, None)):
            start = time.perf_counter()
            build_report(folder, tmp_path / "reports" / f"r{round_}-{len(times)}-{chosen is None}", chosen)
            times.append(time.perf_counter() - start)
    added = statistics.median(with_it) - statistics.median(without)
    print(f"\nscorecard alone: {alone:.3f} s (median of 5); report without it {statistics.median(without):.2f} s, "
          f"with it {statistics.median(with_it):.2f} s (+{added:.2f} s, medians of 3)")
    assert alone < SCORECARD_BUDGET_S, f"the scorecard took {alone:.2f} s for 100 trials x 200 points"
