"""The hardware's identity and the choices made from it (issue 13): both outcomes of the bf16 decision
through a faked capability (never this machine's speed), the peak cache, and the commands that obey it."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
import torch

from benchmark import hardware
from benchmark.__main__ import main
from benchmark.hardware import Hardware, PrecisionError
from benchmark.suite.spec import fit_suite_precision, load_suite

AVX512_BF16 = Hardware(kind="cpu", name="AMD EPYC 9004", cpu_model="AMD EPYC 9004", cores=2, cpu_capability="AVX512",
                       native_bf16=True)
AVX2 = dataclasses.replace(AVX512_BF16, name="AMD EPYC 7002", cpu_model="AMD EPYC 7002", cpu_capability="AVX2",
                           native_bf16=False)
H100 = Hardware(kind="cuda", name="NVIDIA H100 80GB HBM3", cpu_model="x", cores=26, cpu_capability="AVX512",
                native_bf16=True, memory_gb=85.0, compute_capability="9.0", driver="550.54", cuda_version="12.4",
                tf32="conv")


@pytest.fixture
def avx2_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process sees an AVX2 CPU without native bf16 (the seam every decision goes through);
    its made-up peak goes nowhere near the user's cache."""
    monkeypatch.setattr(hardware, "identify", lambda device: AVX2)
    monkeypatch.setattr(hardware, "peak_tflops", lambda *args, **kwargs: 0.1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_this_machine_is_identified_consistently() -> None:
    identity = hardware.identify("cpu")
    assert identity.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert identity.cpu_capability in {"DEFAULT", "NO AVX", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256"}
    assert identity.native_bf16 == hardware.native_cpu_bf16(hardware.cpu_flags(), hardware.onednn_max_isa())
    assert identity.cores >= 1 and identity.threads == torch.get_num_threads()
    line = identity.describe()
    assert line.startswith("cpu: ") and f"{identity.cores} cores" in line and identity.cpu_capability in line
    assert set(identity.columns()) == set(hardware.IDENTITY_COLUMNS)


@pytest.mark.parametrize(("flags", "onednn_max_isa", "native"), [
    ({"avx2", "avx512f", "avx512_bf16"}, None, True),                # Zen 4, Cooper Lake and later
    ({"avx2", "avx512f", "amx_bf16"}, None, True),                   # Sapphire Rapids
    ({"avx2", "avx512f"}, None, False),                              # Skylake-SP: AVX-512 without bf16
    ({"avx2"}, None, False),                                         # the AVX2-only EPYC of issue 13
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX2", False),             # oneDNN capped to AVX2 on a bf16 machine
    ({"avx2", "avx512f", "avx512_bf16"}, "avx512_core", False),      # capped below its bf16 kernels
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512_CORE_BF16", True),
    ({"fp", "asimd", "bf16"}, None, True),                           # Arm with the BF16 extension
    ({"fp", "asimd"}, None, False),
])
def test_native_bf16_from_flags_and_onednn_cap(flags: set[str], onednn_max_isa: str | None, native: bool) -> None:
    assert hardware.native_cpu_bf16(flags, onednn_max_isa) is native


def test_bf16_without_native_support_becomes_fp32_with_one_line_or_an_error_when_strict() -> None:
    assert hardware.resolve_precision("bf16", AVX512_BF16) == ("bf16", "")
    precision, note = hardware.resolve_precision("bf16", AVX2)
    assert precision == "fp32" and "no native bf16" in note and "AVX2" in note and "\n" not in note
    with pytest.raises(PrecisionError, match="no native bf16") as raised:
        hardware.resolve_precision("bf16", AVX2, strict=True)
    assert "\n" not in str(raised.value)
    assert hardware.resolve_precision("fp32", AVX2) == ("fp32", "")


def test_auto_is_the_fast_path_of_each_machine() -> None:
    assert hardware.resolve_precision("auto", AVX512_BF16)[0] == "bf16"
    assert hardware.resolve_precision("auto", AVX2)[0] == "fp32"
    assert hardware.resolve_precision("auto", H100)[0] == "bf16"


@pytest.mark.parametrize(("precision", "message"), [("fp16", "'fp16' needs a CUDA device"), ("fp8", "precision 'fp8'")])
def test_a_precision_the_device_cannot_run_is_one_line_naming_it(precision: str, message: str) -> None:
    with pytest.raises(PrecisionError, match=message) as raised:
        hardware.resolve_precision(precision, AVX2)
    assert "\n" not in str(raised.value)


def test_gpu_peak_follows_the_datasheet_and_tf32() -> None:
    assert hardware.peak_tflops(H100, "bf16") == 989.4
    assert hardware.peak_tflops(H100, "fp32") == 494.7  # TF32 convolutions
    assert hardware.peak_tflops(dataclasses.replace(H100, tf32="off"), "fp32") == 66.9
    assert hardware.peak_tflops(dataclasses.replace(H100, name="Some Future GPU"), "bf16") is None
    assert "compute 9.0" in H100.describe() and "TF32 conv" in H100.describe()


def test_cpu_peak_is_probed_once_per_machine_and_thread_count(tmp_path: Path) -> None:
    calls: list[str] = []

    def probe(precision: str) -> float:
        calls.append(precision)
        return {"fp32": 0.2, "bf16": 0.4}[precision]

    assert hardware.peak_tflops(AVX512_BF16, "fp32", probe=False, cache_dir=tmp_path) is None  # nothing cached: no probe
    hardware.probe_and_cache(AVX512_BF16, tmp_path, probe=probe)
    assert calls == ["fp32", "bf16"]
    assert hardware.peak_tflops(AVX512_BF16, "bf16", probe=False, cache_dir=tmp_path) == 0.4
    # a later probe under load reads lower: the cache keeps the best rate seen
    hardware.probe_and_cache(AVX512_BF16, tmp_path, probe=lambda p: 0.1)
    assert hardware.cached_cpu_peak(AVX512_BF16, tmp_path) == {"fp32": 0.2, "bf16": 0.4}
    two_threads = hardware.with_threads(AVX512_BF16, 2)
    assert hardware.cached_cpu_peak(two_threads, tmp_path) is None  # another thread count, another peak
    (tmp_path / "hardware" / "cpu_peak.json").write_text("{not json")
    assert hardware.cached_cpu_peak(AVX512_BF16, tmp_path) is None  # a damaged cache is measured again


SUITE = """\
name: tiny
data: {dataset: cifar10, source: synthetic, train_subset: 128, eval_subset: 64}
recipe: {name: cifar10_he2015, batch_size: 32, max_steps: 2}
grid: {model: [resnet20]}
resources: {cpu: 1}
precision: PRECISION
eval_every: 2
eval_batch_size: 64
"""


def suite_file(tmp_path: Path, precision: str) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SUITE.replace("PRECISION", precision))
    return path


def test_suite_precision_is_fitted_to_the_cpu(tmp_path: Path, avx2_machine: None) -> None:
    suite = load_suite(suite_file(tmp_path, "auto"))
    assert fit_suite_precision(suite)[0].precision == "fp32"
    fitted, note = fit_suite_precision(load_suite(suite_file(tmp_path, "bf16")))
    assert fitted.precision == "fp32" and "no native bf16" in note
    assert {t.precision for t in fitted.trials()} == {"fp32"}


def test_run_asking_for_bf16_on_a_cpu_without_it_trains_fp32_or_refuses_when_strict(
        tmp_path: Path, avx2_machine: None, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", str(suite_file(tmp_path, "bf16")), "--executor", "local", "--results", str(tmp_path / "results"),
            "--no-report"]
    assert main([*args, "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no native bf16" in err and "\n" not in err
    assert not (tmp_path / "results" / "tiny").exists()
    assert main(args) == 0
    assert "using fp32 instead" in capsys.readouterr().out
    with (tmp_path / "results" / "tiny" / "runs.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert row["precision"] == "fp32" and row["cpu_capability"] == "AVX2" and row["native_bf16"] == "false"


def test_profile_measures_fp32_instead_of_emulated_bf16(tmp_path: Path, avx2_machine: None,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    tiny = ["profile", "--models", "resnet20", "--batch-sizes", "2", "--precisions", "bf16", "fp32", "--channels-last", "off",
            "--compile", "off", "--mode", "infer", "--warmup", "0", "--iters", "1", "--device", "cpu", "--out", str(tmp_path)]
    assert main([*tiny, "--strict"]) == 2
    assert "no native bf16" in capsys.readouterr().err
    assert main(tiny) == 0
    assert "using fp32 instead" in capsys.readouterr().out
    with (tmp_path / "throughput.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["precision"] for r in rows] == ["fp32"]  # bf16 became fp32, measured once
    assert rows[0]["cpu_capability"] == "AVX2" and rows[0]["native_bf16"] == "false"


def test_the_hardware_command_names_the_fast_path(avx2_machine: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert AVX2.describe() in out and "fast path: fp32" in out and "bf16 would be emulated" in out
