"""Reports built from the committed fixture results, checked number by number.

tests/fixtures/results/README.md lists the fixture trials; every expected number below is worked
out by hand from those CSVs (mean and sample std over completed seeds, last evaluation only).
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark.report import build_report, tables
from benchmark.results.read import load_results

FIXTURES = Path(__file__).parent / "fixtures" / "results"
CIFAR = FIXTURES / "cifar_mini"
IMAGENET = FIXTURES / "imagenet_mini"


@pytest.fixture(scope="module")
def cifar() -> object:
    return load_results(CIFAR)


@pytest.fixture(scope="module")
def cifar_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(CIFAR, tmp_path_factory.mktemp("report") / "cifar_mini")


def _row(frame: pd.DataFrame, **match: object) -> pd.Series:
    selected = frame
    for key, value in match.items():
        selected = selected[selected[key] == value]
    assert len(selected) == 1, f"expected one row for {match}, got {len(selected)}"
    return selected.iloc[0]


def test_table6_numbers(cifar) -> None:
    frame = tables.reproduction_table(cifar, 6)
    # resnet20 A, seeds 8.5, 9.0, 9.5: mean 9.0, sample std 0.5; paper 8.75 -> +0.25, within 1.0.
    row = _row(frame, variant="resnet20-A")
    assert (row["n"], row["mean"], row["std"], row["min"], row["max"], row["paper"]) == (3, 9.0, 0.5, 8.5, 9.5, 8.75)
    assert row["difference"] == pytest.approx(0.25)
    assert row["verdict"] == "within ±1.0" and row["iterations"] == "64,000 of 64,000 iterations"
    assert row["reference"] == "He et al. 2015, Table 6"
    # No trial of these results ran on the original data: the JPEG copy's cost is unmeasured, not guessed.
    assert row["data_source"] == "jpeg75" and "JPEG copy: its cost against the original data is unmeasured" in row["note"]
    # resnet56 A: completed 8.2 and 8.6 (seed 2 still running): mean 8.4, std sqrt(0.08); 6.97 -> +1.43.
    row = _row(frame, variant="resnet56-A")
    assert row["n"] == 2 and row["mean"] == pytest.approx(8.4)
    assert row["std"] == pytest.approx(math.sqrt(0.08))
    assert row["difference"] == pytest.approx(1.43)
    assert row["verdict"] == "above" and row["excluded"] == "1 running"
    # resnet32 A: one seed at 6.0 against 7.51 -> -1.51, below; no std from one seed.
    row = _row(frame, variant="resnet32-A")
    assert row["n"] == 1 and row["difference"] == pytest.approx(-1.51) and row["verdict"] == "below"
    assert math.isnan(row["std"])
    # plain56: the diverged and the pending seed are not averaged in; the paper has no plain number.
    row = _row(frame, variant="plain56")
    assert (row["n"], row["mean"]) == (1, 14.0)
    assert row["excluded"] == "1 diverged, 1 pending" and row["verdict"] == "no paper number"
    # option B: Table 6 is option A only.
    row = _row(frame, variant="resnet20-B")
    assert row["mean"] == pytest.approx(8.2) and math.isnan(row["paper"]) and row["excluded"] == "1 failed"


def test_tables_2_and_3_numbers() -> None:
    results = load_results(IMAGENET)
    table2 = tables.reproduction_table(results, 2)
    assert sorted(table2["variant"]) == ["plain18", "plain34", "resnet18-A", "resnet34-A"]
    row = _row(table2, variant="plain18")
    assert row["paper"] == 27.94 and row["difference"] == pytest.approx(3.06) and row["verdict"] == "above"
    assert _row(table2, variant="resnet18-A")["difference"] == pytest.approx(0.62)
    table3 = tables.reproduction_table(results, 3)
    row = _row(table3, variant="resnet34-C", metric="top1_error")
    assert row["paper"] == 24.19 and row["difference"] == pytest.approx(-1.29) and row["verdict"] == "below"
    row = _row(table3, variant="resnet34-B", metric="top5_error")
    assert row["paper"] == 7.46 and row["difference"] == pytest.approx(-0.46) and row["verdict"] == "within ±1.0"
    row = _row(table3, variant="plain34", metric="top5_error")
    assert row["paper"] == 10.02 and row["difference"] == pytest.approx(0.48)
    assert "10-crop" in row["note"]
    assert len(table3) == 8  # plain34 and ResNet-34 A/B/C, top-1 and top-5 each


def test_verdict_boundaries() -> None:
    assert tables.verdict(1.0, 1.0) == "within ±1.0"  # the tolerance itself is within
    assert tables.verdict(-1.0, 1.0) == "within ±1.0"
    assert tables.verdict(1.01, 1.0) == "above"
    assert tables.verdict(-1.01, 1.0) == "below"
    assert tables.verdict(float("nan"), 1.0) == "no paper number"


def test_last_evaluation_not_best(tmp_path: Path) -> None:
    """A better error earlier in the run must not replace the last one (no selection on the test set)."""
    folder = tmp_path / "cifar_mini"
    shutil.copytree(CIFAR, folder)
    metrics = (folder / "metrics.csv").read_text().splitlines()
    metrics = [line.replace("resnet20-A-s0,48000,122.88,0.1,0.625,25,0.75,30,", "resnet20-A-s0,48000,122.88,0.1,0.625,25,0.75,5.0,")
               for line in metrics]
    assert any(",5.0," in line for line in metrics)
    (folder / "metrics.csv").write_text("\n".join(metrics) + "\n")
    row = _row(tables.reproduction_table(load_results(folder), 6), variant="resnet20-A")
    assert row["mean"] == 9.0


def test_convergence_numbers(cifar) -> None:
    frame = tables.convergence_table(cifar)
    # resnet20 A reaches 50% at steps 32k, 32k, 48k -> mean 37,333; 10% only in seeds 0 and 1 (step 64k).
    row = _row(frame, variant="resnet20-A", threshold=50.0)
    assert row["mean_step"] == pytest.approx(112000 / 3) and row["reached"] == 3
    row = _row(frame, variant="resnet20-A", threshold=10.0)
    assert (row["reached"], row["trials"], row["mean_step"]) == (2, 3, 64000.0)
    # resnet56 A: 20% at 48k (seed 0, exactly 20) and 64k (seed 1); seed 2 is running, not there yet.
    row = _row(frame, variant="resnet56-A", threshold=20.0)
    assert (row["reached"], row["trials"], row["mean_step"]) == (2, 3, 56000.0)
    # plain56: the diverged seed never reaches 50%; the pending seed has no metrics and is not counted.
    row = _row(frame, variant="plain56", threshold=50.0)
    assert (row["reached"], row["trials"], row["mean_step"]) == (1, 2, 48000.0)
    row = _row(frame, variant="plain20", threshold=20.0)
    assert row["reached"] == 0 and math.isnan(row["mean_step"])


def test_missing_and_status(cifar) -> None:
    assert tables.status_counts(cifar) == {"completed": 11, "running": 1, "pending": 1, "interrupted": 0, "diverged": 1,
                                          "failed": 1}
    frame = tables.missing_table(cifar).set_index("trial_id")
    assert dict(frame["problem"]) == {
        "plain56-s1": "diverged; 2 of 3 evaluation points",
        "plain56-s2": "pending; no metrics",
        "resnet56-A-s2": "running; 2 of 3 evaluation points",
        "resnet20-B-s2": "failed; no metrics",
    }
    assert frame.loc["resnet20-B-s2", "error"] == "RuntimeError: out of memory"


def test_shortcut_and_throughput_numbers(cifar) -> None:
    shortcuts = tables.shortcut_table(cifar)
    assert _row(shortcuts, shortcut="A")["mean"] == 9.0
    row = _row(shortcuts, shortcut="B")
    assert row["mean"] == pytest.approx(8.2) and row["n"] == 2 and row["std"] == pytest.approx(math.sqrt(0.08))
    runs = tables.run_throughput_table(cifar)
    row = _row(runs, variant="resnet20-A", device="cpu")
    assert (row["n"], row["mean"]) == (3, 420.0)
    hardware = tables.hardware_table(cifar.throughput).set_index("model")
    # resnet20 on the CPU was measured twice: the later measurement (500) wins over 490.
    assert hardware.loc["resnet20", "Intel Xeon (2 cores)"] == 500
    assert hardware.loc["resnet56", "NVIDIA H100 80GB HBM3"] == 12000


def test_report_files_and_rows(cifar_report: Path) -> None:
    markdown = (cifar_report / "report.md").read_text()
    assert ("| resnet20-A | top1_error | jpeg75 | test | 64,000 of 64,000 iterations | 9.00 ± 0.50 (n=3, 8.50–9.50) "
            "| 8.75 | He et al. 2015, Table 6 | +0.25 | within ±1.0 |") in markdown
    assert ("| resnet56-A | top1_error | jpeg75 | test | 64,000 of 64,000 iterations | 8.40 ± 0.28 (n=2, 8.20–8.60) "
            "| 6.97 | He et al. 2015, Table 6 | +1.43 | above | 1 running |") in markdown
    assert "| cifar10 | resnet20-A | 37333 | 48000 | 64000 | 64000 (2/3 trials) |" in markdown
    assert "| cifar10 | plain56 | 48000 (1/2 trials) | not reached | not reached | not reached |" in markdown
    assert "4 of 15 trials are not fully usable (1 pending, 1 running, 1 failed, 1 diverged)" in markdown
    assert "A REPRODUCTION, not the paper" in markdown  # akamaster beside, labelled
    figures = sorted(p.stem for p in (cifar_report / "figures").glob("*.png"))
    assert figures == ["depth_cifar10", "figure6_cifar10_A", "figure6_cifar10_B", "gradient_norms", "layer_responses"]
    assert sorted(p.stem for p in (cifar_report / "figures").glob("*.svg")) == figures
    for stem in figures:
        assert f"(figures/{stem}.png)" in markdown
    html = (cifar_report / "report.html").read_text()
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) == len(figures)
    # Self-contained: no external resource of any kind.
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert "<link" not in html and "@import" not in html


def test_default_out_dir(tmp_path: Path) -> None:
    results = tmp_path / "results" / "cifar_mini"
    shutil.copytree(CIFAR, results)
    out = build_report(results)
    assert out == tmp_path / "reports" / "cifar_mini"
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_report_from_pending_only(tmp_path: Path) -> None:
    """No metrics.csv yet (every trial pending): a report still renders and says what is missing."""
    folder = tmp_path / "pending"
    folder.mkdir()
    lines = (CIFAR / "runs.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:3]
    rows = [re.sub(r",completed,", ",pending,", row) for row in rows]
    rows = [",".join(cell if i not in (11, 12, 13, 14) else "" for i, cell in enumerate(row.split(","))) for row in rows]
    (folder / "runs.csv").write_text("\n".join([header, *rows]) + "\n")
    out = build_report(folder, tmp_path / "out")
    markdown = (out / "report.md").read_text()
    assert "2 of 2 trials are not fully usable (2 pending); 2 have no metrics at all" in markdown
    assert "| plain20 | top1_error | jpeg75 | test |  | — | — |  | — | no completed trial | 2 pending |" in markdown


def test_reads_what_the_results_writer_writes(tmp_path: Path) -> None:
    """The project's own writer (benchmark.results.tables) and this reader agree on the format (NaN, bools, blanks)."""
    from benchmark.results.tables import ResultsWriter

    writer = ResultsWriter(tmp_path / "written")
    common = {"suite": "written", "family": "cifar", "preact": False, "dataset": "cifar10", "data_source": "synthetic",
              "eval_split": "test", "device": "cpu", "recipe_lr": 0.1}
    writer.update_run("plain20-s0", model="plain20", kind="plain", depth=20, shortcut=None, seed=0, status="pending",
                      **common)
    writer.update_run("resnet20-s0", model="resnet20", kind="residual", depth=20, shortcut="A", seed=0,
                      status="pending", **common)
    for step, (train, test) in enumerate([(60.0, 62.0), (40.0, 45.0)], start=1):
        writer.add_metrics("resnet20-s0", {"step": step * 100, "epoch": 0.1, "lr": 0.1, "train_loss": 1.0,
                                           "train_error": train, "eval_loss": 1.0, "eval_error": test,
                                           "eval_top5_error": 5.0, "eval_split": "test", "images_per_s": 400.0,
                                           "wall_s": 1.0})
    writer.add_metrics("plain20-s0", {"step": 100, "train_error": float("nan"), "eval_error": float("nan")})
    writer.update_run("resnet20-s0", status="completed", final_eval_error=45.0, final_train_error=40.0)
    writer.update_run("plain20-s0", status="diverged", error="loss is nan")
    results = load_results(tmp_path / "written")
    assert list(results.runs["variant"]) == ["plain20", "resnet20-A"]
    row = _row(tables.reproduction_table(results, 6), variant="resnet20-A")
    # No recipe recorded: measured against the paper's CIFAR-10 schedule; 200 iterations are not comparable.
    assert (row["n"], row["mean"], row["paper"]) == (1, 45.0, 8.75)
    assert row["verdict"] == "not comparable: 200 of 64,000 iterations" and math.isnan(row["difference"])
    assert math.isnan(results.metrics.set_index("trial_id").loc["plain20-s0", "eval_error"])


@pytest.fixture(scope="module")
def throughput_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/throughput/ holds the profile's and the packing table, no trials."""
    return build_report(FIXTURES / "throughput", tmp_path_factory.mktemp("throughput") / "report")


def test_throughput_folder_compares_hardware_side_by_side(throughput_report: Path) -> None:
    # The hardware comparison: the latest measurement of each setting per device (500 replaced 490
    # on the Xeon).
    out = throughput_report
    markdown = (out / "report.md").read_text()
    assert "| resnet20 | train | 128 | fp32 | False | False | 500 | 30000 |" in markdown
    assert "| resnet56 | train | 128 | fp32 | False | False | 170 | 12000 |" in markdown
    assert (out / "figures" / "throughput.png").stat().st_size > 0 and (out / "figures" / "throughput.svg").exists()
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_throughput_folder_reports_trials_sharing_a_device(throughput_report: Path) -> None:
    # packing.csv beside throughput.csv: the latest measurement of each setting per device.
    markdown = (throughput_report / "report.md").read_text()
    assert "## Trials sharing one device" in markdown
    assert "| Intel Xeon (2 cores) | resnet20 | 128 | bf16 | True | False | 2 | 1300 | 650 | 1.30 | 0.65 |" in markdown
    assert "| 1200 |" not in markdown  # replaced by the later measurement
    assert "| NVIDIA H100 80GB HBM3 | resnet20 | 128 | bf16 | True | True | 4 | 60000 | 15000 | 3.00 | 0.75 |" in markdown


def test_a_folder_with_only_packing_measurements_gets_a_throughput_report(tmp_path: Path) -> None:
    folder = tmp_path / "throughput"
    folder.mkdir()
    (folder / "packing.csv").write_text((FIXTURES / "throughput" / "packing.csv").read_text())
    markdown = (build_report(folder, tmp_path / "report") / "report.md").read_text()
    assert "Trials sharing one device" in markdown and "| 60000 |" in markdown


def test_runs_without_optional_provenance_columns_still_report(tmp_path: Path) -> None:
    # git_commit and torch_version are shown when present, not required (load.RUNS_COLUMNS).
    folder = tmp_path / "suite"
    shutil.copytree(FIXTURES / "cifar_mini", folder)
    lines = (folder / "runs.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in ("git_commit", "torch_version")]
    assert len(keep) == len(header) - 2
    (folder / "runs.csv").write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    markdown = (build_report(folder, tmp_path / "report") / "report.md").read_text()
    assert "git commits:" not in markdown and "devices:" in markdown


def test_the_report_says_when_the_recipe_was_scaled(tmp_path: Path) -> None:
    """A time-budgeted CPU run (benchmark/fleet/planner.py) trains cifar10_he2015_scaled: the report says
    its drops were scaled to the run's length, and does not for the paper's own recipe."""
    folder = tmp_path / "suite"
    shutil.copytree(FIXTURES / "cifar_mini", folder)
    runs = pd.read_csv(folder / "runs.csv", dtype=str, keep_default_na=False)
    markdown = (build_report(folder, tmp_path / "paper") / "report.md").read_text()
    assert "Recipe cifar10_he2015:" in markdown and "scaled" not in markdown
    runs = runs.assign(recipe="cifar10_he2015_scaled", recipe_max_steps="2100", recipe_lr_milestones="1050 1575")
    runs.to_csv(folder / "runs.csv", index=False)
    markdown = (build_report(folder, tmp_path / "scaled") / "report.md").read_text()
    assert "Recipe cifar10_he2015_scaled: 2100 iterations, learning rate divided at 1,050 and 1,575" in markdown
    assert "drops scaled to this length" in markdown
