"""`python -m benchmark profile` end to end on a tiny CPU configuration, and its input errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmark.__main__ import main
from benchmark.profile import COLUMNS, load_config

TINY = ["--models", "resnet20", "--batch-sizes", "4", "--precisions", "fp32", "--channels-last", "off",
        "--compile", "off", "--warmup", "1", "--iters", "2", "--device", "cpu"]


def read_rows(table: Path) -> tuple[list[str], list[dict[str, str]]]:
    with table.open(newline="") as f:
        header = next(csv.reader(f))
    with table.open(newline="") as f:
        return header, list(csv.DictReader(f))


def test_profile_appends_rows_with_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["profile", *TINY, "--mode", "train", "infer", "--out", str(tmp_path)]) == 0
    assert "images_per_s" in capsys.readouterr().out  # the readable table
    assert main(["profile", *TINY, "--mode", "train", "infer", "--out", str(tmp_path)]) == 0
    table = tmp_path / "throughput.csv"
    header, rows = read_rows(table)
    assert tuple(header) == COLUMNS
    assert table.read_text().count("model,mode,") == 1  # header once
    assert len(rows) == 4  # 2 runs x (train, infer)
    assert {r["mode"] for r in rows} == {"train", "infer"}
    for row in rows:
        assert float(row["images_per_s"]) > 0
        assert float(row["peak_memory_mb"]) >= 0
        assert row["device_kind"] == "cpu"
        assert row["device_name"] and row["cpu_model"] and int(row["cores"]) >= 1
        assert row["torch_version"] and row["hostname"] and row["measured_at"]
        assert row["channels_last"] == "false" and row["compiled"] == "false"
        assert float(row["device_peak_tflops"]) > 0 and float(row["flops_fraction"]) > 0


def test_fp16_on_cpu_is_skipped_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [a if a != "fp32" else "fp16" for a in TINY]
    assert main(["profile", *args, "--mode", "infer", "--out", str(tmp_path)]) == 0
    assert "fp16 needs a CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "throughput.csv").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--models", "resnet7"], "resnet7"),
        (["--precisions", "fp8"], "precision 'fp8'"),
        (["--batch-sizes", "0"], "batch size 0"),
        (["--mode", "serve"], "mode 'serve'"),
        (["--iters", "0"], "iters 0"),
    ],
)
def test_bad_input_exits_2_and_appends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, change: list[str], message: str
) -> None:
    assert main(["profile", *TINY, *change, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "throughput.csv").exists()


def test_a_table_with_another_header_is_not_appended_to(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "throughput.csv").write_text("model,img_s\nresnet20,1\n")
    assert main(["profile", *TINY, "--out", str(tmp_path)]) == 2
    assert "header" in capsys.readouterr().err
    assert (tmp_path / "throughput.csv").read_text() == "model,img_s\nresnet20,1\n"


def test_the_shipped_config_is_valid() -> None:
    config = load_config(Path(__file__).resolve().parents[1] / "suites" / "throughput.yaml")
    assert "resnet20" in config.models and config.iters > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [resnet20]\nbatch_size: [128]\n", "unknown key 'batch_size'"),
        ("models: [resnet20]\nchannels_last: maybe\n", "channels_last must be"),
        ("models: [resnet20]\nwarmup: -1\n", "warmup -1"),
        ("models: [resnet20\n", "YAML syntax error"),
        ("- resnet20\n", "expected a mapping"),
    ],
)
def test_bad_config_files_name_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture, text: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["profile", "--config", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(config) in err and message in err and "\n" not in err
    assert not (tmp_path / "throughput.csv").exists()
