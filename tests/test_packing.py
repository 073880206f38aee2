"""`python -m benchmark packing`: k trials sharing the device through Ray, end to end on the CPU,
and its input errors (one line, exit 2, nothing appended)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from benchmark.__main__ import main
from benchmark.throughput.packing import COLUMNS

CORES = len(os.sched_getaffinity(0))
TINY = ["--model", "resnet20", "--batch-size", "16", "--precision", "fp32", "--channels-last", "off",
        "--steps", "3", "--warmup", "1", "--rounds", "1", "--device", "cpu"]


def read_rows(table: Path) -> list[dict[str, str]]:
    with table.open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return list(reader)


@pytest.fixture
def no_ray_running() -> None:
    """The measurement starts its own private Ray; an earlier test's Ray run may still be up."""
    import ray

    ray.shutdown()


@pytest.mark.slow
@pytest.mark.usefixtures("no_ray_running")
@pytest.mark.skipif(CORES < 2, reason="sharing the CPU needs two cores")
def test_packing_measures_k_trials_against_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # --trials 2 alone: the baseline (one trial with every core) is always measured too.
    assert main(["packing", *TINY, "--trials", "2", "--rounds", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "speedup_vs_one" in out and "round 2/2: 2 trial(s)" in out
    rows = read_rows(tmp_path / "packing.csv")
    assert [r["trials"] for r in rows] == ["1", "2"]
    one, two = rows
    assert float(one["speedup_vs_one"]) == 1.0 and float(one["efficiency"]) == 1.0
    assert one["images_per_s_total"] == one["images_per_s_per_trial"]
    # The speedup is the ratio of the two totals; the efficiency is the speedup per trial. The table
    # rounds the totals to 0.1 img/s (and the ratios to 0.001), so their ratio is known only that well:
    # on a busy machine one trial may run 2 img/s, and 0.05 of rounding is then 2.5%.
    total_one, total_two = float(one["images_per_s_total"]), float(two["images_per_s_total"])
    speedup = total_two / total_one
    rounding = 0.05 / total_one + 0.05 / total_two
    assert float(two["speedup_vs_one"]) == pytest.approx(speedup, rel=rounding, abs=2e-3)
    assert float(two["efficiency"]) == pytest.approx(speedup / 2, rel=rounding, abs=2e-3)
    # The total spans from the first start to the last end, so it cannot beat the sum of the trials.
    assert float(two["images_per_s_total"]) <= 2 * float(two["images_per_s_per_trial"]) * 1.001
    for row in rows:
        assert float(row["images_per_s_total"]) > 0
        assert row["device_kind"] == "cpu" and int(row["cores"]) == CORES
        assert row["compiled"] == "false"  # a CPU defaults to eager, as degradation_cpu.yaml
        assert row["precision"] == "fp32" and row["loader"] == "device" and row["steps"] == "3"
        assert row["rounds"] == "2"


@pytest.mark.parametrize(("args", "message"), [
    (["--trials", str(CORES + 1)], f"--trials {CORES + 1}: a CPU trial needs at least one core"),
    (["--trials", "0"], "--trials [0]: expected positive integers"),
    (["--model", "resnet21"], "unknown model 'resnet21'"),
    (["--precision", "fp16"], "fp16 needs a CUDA device"),
    (["--precision", "fp64"], "--precision 'fp64': expected one of fp32, bf16, fp16"),
    (["--steps", "0"], "--steps 0: expected an integer >= 1"),
    (["--rounds", "0"], "--rounds 0: expected an integer >= 1"),
])
def test_bad_input_is_one_line_and_appends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    assert main(["packing", *TINY, *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "packing.csv").exists()


def test_a_table_with_another_schema_is_not_appended_to(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "packing.csv"
    table.write_text("model,trials\nresnet20,1\n")
    assert main(["packing", *TINY, "--out", str(tmp_path)]) == 2
    assert "packing.csv: header does not match" in capsys.readouterr().err
    assert table.read_text() == "model,trials\nresnet20,1\n"


@pytest.mark.slow
def test_a_ray_already_running_in_the_process_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Its resources are not this measurement's to choose (it might see other GPUs, or other users).
    from benchmark.fleet.ray_cluster import connect

    connection = connect(None, num_cpus=1, num_gpus=0)
    try:
        assert main(["packing", *TINY, "--out", str(tmp_path)]) == 2
    finally:
        connection.close()
    assert "Ray is already running in this process" in capsys.readouterr().err
    assert not (tmp_path / "packing.csv").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("no_ray_running")
def test_a_trial_that_fails_is_one_line_and_appends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmark.throughput import packing

    def out_of_memory(self: packing.PackedTrial, steps: int) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(the rest of torch's message)")

    monkeypatch.setattr(packing.PackedTrial, "train", out_of_memory)  # Ray ships the class by value
    assert main(["packing", *TINY, "--trials", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "error: packing: a trial failed: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    assert not (tmp_path / "packing.csv").exists()


# ------------------------------------------------------- the device, passed through (issue 14.3)


@pytest.mark.parametrize(("visible", "index", "physical"), [
    (None, 0, "0"), (None, 1, "1"), ("5,7", 1, "7"), ("GPU-aa, GPU-bb", 1, "GPU-bb"), ("3", 0, "3"),
])
def test_cuda_n_is_named_by_its_physical_id(monkeypatch: pytest.MonkeyPatch, visible: str | None, index: int,
                                            physical: str) -> None:
    import torch

    from benchmark.throughput.packing import physical_gpu

    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert physical_gpu(torch.device("cuda", index)) == physical


def test_a_device_outside_cuda_visible_devices_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from benchmark import BenchmarkError
    from benchmark.throughput.packing import physical_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    with pytest.raises(BenchmarkError, match="CUDA_VISIBLE_DEVICES=5,7 has no GPU 2"):
        physical_gpu(torch.device("cuda", 2))


@pytest.mark.slow
@pytest.mark.usefixtures("no_ray_running")
def test_trials_sharing_cuda_1_are_given_that_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Ray node given one logical GPU (this machine has none): the private instance for cuda:1 of
    # a process that sees GPUs 5 and 7 must hand every k=4 share GPU 7, not GPU 0.
    import ray
    import torch

    from benchmark.throughput.packing import actor_options, gpu_placement, private_ray

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    device = torch.device("cuda", 1)
    with private_ray(device, cores=CORES):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"  # this process keeps its own view
        assert ray.cluster_resources().get("GPU") == 1
        share = actor_options(4, device, CORES)
        assert share["num_gpus"] == 0.25
        places = ray.get([ray.remote(**share)(gpu_placement).remote() for _ in range(4)])
    assert {p["visible"] for p in places} == {"7"}
    assert not ray.is_initialized()
