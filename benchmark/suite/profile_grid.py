"""A profile grid (suites/throughput.yaml): the models x batch sizes x precisions x memory formats x
compilation x modes that `python -m benchmark profile` measures, checked before anything runs.

A sibling of the training suite's schema (spec.py) without pydantic: `profile` and `gpu-check`
must start on a GPU machine that has only torch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from benchmark import ModelError, SuiteError
from benchmark.hardware import PRECISIONS
from benchmark.models import model_info
from benchmark.suite.yaml_file import read_yaml

MODES = ("train", "infer")


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    models: tuple[str, ...] = ("resnet20",)
    batch_sizes: tuple[int, ...] = (128,)
    precisions: tuple[str, ...] = ("fp32", "bf16")
    channels_last: tuple[bool, ...] = (False, True)
    compile: tuple[bool, ...] = (False,)
    modes: tuple[str, ...] = MODES
    warmup: int = 5
    iters: int = 20


def validate(config: ProfileConfig, where: str = "profile") -> ProfileConfig:
    """Check every value before anything is measured, so bad input appends nothing."""
    for name in config.models:
        try:
            model_info(name)
        except ModelError as exc:
            raise ModelError(f"{where}: models: {exc}") from None
    for key in ("models", "batch_sizes", "precisions", "channels_last", "compile", "modes"):
        if not getattr(config, key):
            raise SuiteError(f"{where}: {key} is empty")
    for size in config.batch_sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise SuiteError(f"{where}: batch size {size!r} must be a positive integer")
    for precision in config.precisions:
        if precision not in PRECISIONS:
            raise SuiteError(f"{where}: precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    for mode in config.modes:
        if mode not in MODES:
            raise SuiteError(f"{where}: mode {mode!r}: expected one of {', '.join(MODES)}")
    for key in ("channels_last", "compile"):
        if not all(isinstance(v, bool) for v in getattr(config, key)):
            raise SuiteError(f"{where}: {key} must be true, false or a list of them")
    for key, least in (("warmup", 0), ("iters", 1)):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise SuiteError(f"{where}: {key} {value!r} must be an integer >= {least}")
    return config


def load_config(path: Path) -> ProfileConfig:
    """Read a profile YAML (suites/throughput.yaml); unknown keys and bad values are one-line errors."""
    raw = read_yaml(Path(path))  # the suites' bounded, safe loader: one line for any bad file
    fields = {f.name for f in dataclasses.fields(ProfileConfig)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise SuiteError(f"{path}: unknown key {key!r} (expected one of {', '.join(sorted(fields))})")
        if key in ("warmup", "iters"):
            values[key] = value
        else:
            values[key] = tuple(value) if isinstance(value, list) else (value,)
    return validate(ProfileConfig(**values), where=str(path))
