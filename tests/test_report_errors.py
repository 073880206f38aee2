"""Bad input: one clear ResultsError naming the folder or file, and exit status 2 at the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark import ResultsError
from benchmark.__main__ import main
from benchmark.report import build_report
from benchmark.results.read import load_results

CIFAR = Path(__file__).parent / "fixtures" / "results" / "cifar_mini"


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    shutil.copytree(CIFAR, folder)
    return folder


def _expect(folder: Path, *needles: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ResultsError) as caught:
        build_report(folder, folder.parent / "out")
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert not (folder.parent / "out" / "report.html").exists()  # nothing half-written
    assert main(["report", str(folder), "--out", str(folder.parent / "out")]) == 2
    assert needles[0] in capsys.readouterr().err


def test_missing_folder(tmp_path: Path, capsys) -> None:
    _expect(tmp_path / "nowhere", str(tmp_path / "nowhere"), "does not exist", capsys=capsys)


def test_empty_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    _expect(tmp_path / "empty", str(tmp_path / "empty"), "is empty", capsys=capsys)


def test_missing_columns(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    lines = (folder / "runs.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in ("status", "final_eval_error")]
    (folder / "runs.csv").write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    _expect(folder, str(folder / "runs.csv"), "missing columns status, final_eval_error", capsys=capsys)


def test_missing_metrics_columns(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    lines = (folder / "metrics.csv").read_text().splitlines()
    (folder / "metrics.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")  # drop wall_s
    _expect(folder, str(folder / "metrics.csv"), "missing columns wall_s", capsys=capsys)


def test_torn_line(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    with (folder / "metrics.csv").open("a") as handle:
        handle.write("resnet56-A-s2,64000,163.84,0.1\n")  # a half-written append
    _expect(folder, str(folder / "metrics.csv"), "line 39 has 4 fields, the header has 12", capsys=capsys)


def test_unparseable_csv(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    text = (folder / "runs.csv").read_text()
    (folder / "runs.csv").write_text(text.replace("plain20-s0,", '"plain20-s0,', 1))  # an unclosed quote
    _expect(folder, str(folder / "runs.csv"), capsys=capsys)


def test_text_in_numeric_column(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    text = (folder / "metrics.csv").read_text()
    (folder / "metrics.csv").write_text(text.replace("plain20-s0,64000,163.84,0.1,0.625,25,0.25,10.0,",
                                                     "plain20-s0,64000,163.84,0.1,0.625,25,0.25,ten,"))
    _expect(folder, str(folder / "metrics.csv"), "column eval_error must be numeric, line 4 holds 'ten'", capsys=capsys)


def test_duplicate_trial_step(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    lines = (folder / "metrics.csv").read_text().splitlines()
    (folder / "metrics.csv").write_text("\n".join(lines + [lines[2]]) + "\n")
    _expect(folder, str(folder / "metrics.csv"), "duplicate (trial_id, step) row ('plain20-s0', 48000)", capsys=capsys)


def test_duplicate_trial(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    lines = (folder / "runs.csv").read_text().splitlines()
    (folder / "runs.csv").write_text("\n".join(lines + [lines[1]]) + "\n")
    _expect(folder, str(folder / "runs.csv"), "trial_id 'plain20-s0' appears twice", capsys=capsys)


def test_unknown_status_and_bad_percentage(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    text = (folder / "runs.csv").read_text()
    (folder / "runs.csv").write_text(text.replace(",completed,", ",done,", 1))
    _expect(folder, str(folder / "runs.csv"), "column status must be one of", "'done'", capsys=capsys)
    (folder / "runs.csv").write_text(text.replace(",64000,25,10.0,", ",64000,25,1000.0,", 1))
    _expect(folder, str(folder / "runs.csv"), "final_eval_error is a percentage", capsys=capsys)


def test_metrics_for_unknown_trial(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    with (folder / "metrics.csv").open("a") as handle:
        handle.write("ghost-s0,32000,81.92,0.1,1.5,60,1.55,62,20,test,400,33.3\n")
    _expect(folder, str(folder / "metrics.csv"), "trial_ids not in runs.csv: ghost-s0", capsys=capsys)


def test_header_only_runs(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    (folder / "runs.csv").write_text((folder / "runs.csv").read_text().splitlines()[0] + "\n")
    _expect(folder, str(folder / "runs.csv"), "no trials", capsys=capsys)


def test_corrupt_analysis_table(tmp_path: Path, capsys) -> None:
    folder = _copy(tmp_path)
    path = folder / "analysis" / "gradient_norms.csv"
    path.write_text(path.read_text().replace(",init,0,", ",init,zero,", 1))
    _expect(folder, str(path), "column step must be numeric", capsys=capsys)


def test_valid_fixture_loads() -> None:
    results = load_results(CIFAR)
    assert len(results.runs) == 15 and len(results.metrics) == 37
    assert set(results.analysis) == {"gradient_norms", "layer_responses"}


def test_bad_boolean_in_the_packing_table(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "throughput"
    folder.mkdir()
    fixture = (CIFAR.parent / "throughput" / "packing.csv").read_text().splitlines()
    fixture[1] = fixture[1].replace(",true,false,", ",true,maybe,", 1)
    (folder / "packing.csv").write_text("\n".join(fixture) + "\n")
    _expect(folder, str(folder / "packing.csv"), "compiled", capsys=capsys)
