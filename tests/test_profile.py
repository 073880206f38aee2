"""`python -m benchmark profile` end to end on a tiny CPU configuration, and its input errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmark.__main__ import main
from benchmark.suite.profile_grid import load_config
from benchmark.throughput.profile import COLUMNS

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


# ------------------------------------------------------- the measured device, passed through (issue 14.3)


def test_cuda_timing_records_its_events_on_the_measured_devices_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # `profile --device cuda:1` recorded its events on the current device's (cuda:0's) stream.
    import torch

    from benchmark.throughput import profile

    device = torch.device("cuda", 1)
    recorded: list[object] = []
    synced: list[object] = []

    class Event:
        def __init__(self, enable_timing: bool) -> None:
            assert enable_timing

        def record(self, stream: object = None) -> None:
            recorded.append(stream)

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, end: "Event") -> float:
            return 40.0  # ms

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("stream of", device))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    assert profile._seconds_per_iteration(lambda: None, 4, device) == pytest.approx(0.01)
    assert recorded == [("stream of", device)] * 2 and synced == [device]


def test_every_configuration_is_measured_with_its_device_current(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from contextlib import contextmanager

    import torch

    from benchmark.throughput import profile

    device = torch.device("cuda", 1)
    current: list[object] = []
    seen: list[tuple] = []

    @contextmanager
    def cuda_device(which: object):  # noqa: ANN202
        current.append(which)
        yield
        current.pop()

    monkeypatch.setattr(torch.cuda, "device", cuda_device)
    fake_ident = {**profile.measurement_identity(torch.device("cpu")), "device_kind": "cuda", "device_name": "GPU 1"}
    monkeypatch.setattr(profile, "measurement_identity", lambda d: fake_ident)
    monkeypatch.setattr(profile, "_prime", lambda d: seen.append(("prime", d, list(current))))
    monkeypatch.setattr(profile.hardware, "peak_tflops", lambda hw, precision: None)
    # The device's identity is read on the CPU (no GPU here): only the device stream's handling is under test.
    cpu_identity = profile.hardware.identify(torch.device("cpu"))
    monkeypatch.setattr(profile.hardware, "identify", lambda d: cpu_identity)
    monkeypatch.setattr(profile, "skip_reason", lambda *args: None)
    monkeypatch.setattr(profile, "measure", lambda *args: seen.append(("measure", args[-1], list(current))) or (100.0, 1.0))
    config = profile.ProfileConfig(models=("resnet20",), precisions=("fp32",), channels_last=(False,), modes=("train",))
    rows = profile.run_profile(config, tmp_path, device)
    assert seen == [("prime", device, [device]), ("measure", device, [device])]
    assert rows[0]["device_name"] == "GPU 1" and current == []
