"""Suite files: schema, YAML loading, `--set key=value` overrides, smoke sizing, grid expansion.

A suite names the data, the loader, a recipe, the grid of *scientific* axes (plain/residual, depth,
shortcut option, pre-activation), the *nuisance* axis (seeds) and how to run (resources, precision,
evaluation cadence). Loading validates everything a user can get wrong and reports it in one line
that names the file and the key: ``suites/x.yaml: grid.model[1]: unknown model 'resnet57' ...``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark import SuiteError, hardware
from benchmark.suite.recipes import RECIPES, Recipe
from benchmark.suite.yaml_file import apply_override, read_yaml

CIFAR_SOURCES = ("auto", "torchvision", "jpeg75", "synthetic")
SPLITS = {"cifar10": ("train50k", "train45k"), "imagenet": ("val",)}


MAX_TRIALS = 10_000


class _Strict(BaseModel):
    # Unknown keys are rejected and specs are immutable once loaded (big_vision's lesson: a typo'd
    # key that is silently ignored is the worst kind of bug in an experiment). Strict types: `true`
    # is not the integer 1 (`max_steps: true` would train one step), and no value is infinite or NaN.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DataSpec(_Strict):
    dataset: Literal["cifar10", "imagenet"] = "cifar10"
    # cifar10: auto | torchvision | jpeg75 | synthetic (see benchmark.data.load_cifar10 for the
    # order in which `auto` looks); imagenet: folder (an ImageFolder tree at `root`).
    source: str = "auto"
    split: str = "train50k"
    root: str | None = None  # where the dataset lives (a folder, or the JPEG .npz for cifar10)
    train_subset: int | None = Field(default=None, gt=0)  # first N training images (smoke tests)
    eval_subset: int | None = Field(default=None, gt=0)
    num_workers: int = Field(default=2, ge=0)  # torch/ffcv loaders only

    @model_validator(mode="after")
    def _source_and_split(self) -> "DataSpec":
        if self.dataset == "cifar10" and self.source not in CIFAR_SOURCES:
            raise ValueError(f"unknown cifar10 source '{self.source}': expected one of {', '.join(CIFAR_SOURCES)}")
        if self.dataset == "imagenet":
            if self.source != "folder":
                raise ValueError(f"unknown imagenet source '{self.source}': expected 'folder'")
            if not self.root:
                raise ValueError("imagenet needs data.root: a folder holding train/ and val/")
        if self.split not in SPLITS[self.dataset]:
            raise ValueError(f"unknown {self.dataset} split '{self.split}': expected one of {', '.join(SPLITS[self.dataset])}")
        return self


class Grid(_Strict):
    """The scientific axes; every combination is a trial.

    Models are named directly (`model: [plain20, resnet56]`) or as `kind` × `depth`. `shortcut` is a
    residual-only axis: plain nets have no shortcut, so no plain trial is multiplied by it; left
    out, each model keeps its paper default (option A on CIFAR and ResNet-18/34, B for 50/101/152).
    """

    model: list[str] | None = Field(default=None, min_length=1)
    kind: list[Literal["plain", "residual"]] | None = Field(default=None, min_length=1)
    depth: list[int] | None = Field(default=None, min_length=1)
    shortcut: list[Literal["A", "B", "C"]] | None = Field(default=None, min_length=1)
    preact: list[bool] = Field(default=[False], min_length=1)

    @field_validator("model", "kind", "depth", "shortcut", "preact")
    @classmethod
    def _no_repeats(cls, values: list[Any] | None, info: Any) -> list[Any] | None:
        # a repeated model would train the same trial twice (and write its rows twice)
        for value in values or []:
            if values.count(value) > 1:
                raise ValueError(f"{value!r} appears {values.count(value)} times in grid.{info.field_name}")
        return values

    @model_validator(mode="after")
    def _one_way_of_naming_models(self) -> "Grid":
        if self.model is None and (self.kind is None or self.depth is None):
            raise ValueError("give grid.model, or both grid.kind and grid.depth")
        if self.model is not None and (self.kind is not None or self.depth is not None):
            raise ValueError("give grid.model or grid.kind + grid.depth, not both")
        return self


class Resources(_Strict):
    # Data-parallel ranks per trial (PyTorch DDP under a Ray Train TorchTrainer, benchmark/fleet/ray_ddp.py);
    # cpu, gpu and custom below are then *per worker*: {workers: 8, gpu: 1, cpu: 8} is the paper's 8 GPUs.
    workers: int = Field(default=1, ge=1, le=1024)
    cpu: float = Field(default=1, gt=0)
    gpu: float = Field(default=0, ge=0)  # fractions let several small CIFAR trials share one GPU
    # Ray custom resources per trial, e.g. {node_a: 1} to place trials on the nodes that offer it.
    custom: dict[str, float] = Field(default_factory=dict)

    @field_validator("custom")
    @classmethod
    def _positive(cls, custom: dict[str, float]) -> dict[str, float]:
        for name, amount in custom.items():
            if name in ("CPU", "GPU", "cpu", "gpu", "memory") or amount <= 0:
                raise ValueError(f"custom resource {name!r}: expected a positive amount of a resource other "
                                 "than cpu/gpu/memory (those have their own keys)")
        return custom


class Smoke(_Strict):
    """What `--smoke` shrinks a suite to: a quick end-to-end check of the same file."""

    max_steps: int = Field(default=60, gt=0)
    train_subset: int = Field(default=2048, gt=0)
    eval_subset: int = Field(default=1000, gt=0)
    eval_every: int = Field(default=20, gt=0)


class Suite(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    data: DataSpec = DataSpec()
    loader: Literal["device", "ffcv", "torch"] = "device"
    recipe: Recipe
    grid: Grid
    seeds: list[int] = Field(default=[0], min_length=1)
    resources: Resources = Resources()
    # auto: bf16 where the device computes it natively, else fp32 (benchmark/hardware/); the fleet
    # makes it concrete before any trial exists, so trials and runs.csv hold fp32 or bf16.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    compile: bool = False
    # TF32 inside fp32 matmuls and convolutions (Ampere and newer GPUs; no effect elsewhere). Off by
    # default: `precision: fp32` then means IEEE fp32, as the paper trained; true trades ~3 decimal
    # digits of those products for speed. With bf16/fp16 autocast, only the ops left in fp32 change.
    tf32: bool = False
    # Deterministic kernels (cuDNN deterministic, no autotuning, torch.use_deterministic_algorithms):
    # identical GPU reruns at some speed. CPU trials with one thread are deterministic either way.
    deterministic: bool = False
    eval_every: int = Field(default=500, gt=0)  # iterations between evaluations (and checkpoints)
    eval_batch_size: int = Field(default=1000, gt=0)
    eval_ten_crop: bool = False  # ImageNet: the paper's 10-crop testing (Tables 2, 3), else one centre crop
    # With resources.workers > 1: synchronise BN's batch statistics across ranks. Off by default, as
    # the paper's multi-GPU training: BN without synchronisation, each GPU normalising its own share.
    sync_bn: bool = False
    # Where the Ray executor keeps checkpoints: a path every node sees, or a URI (s3://...);
    # default: the results folder's _state/ray (enough on one machine). --storage overrides it.
    storage: str | None = None
    smoke: Smoke = Smoke()

    @field_validator("recipe", mode="before")
    @classmethod
    def _named_recipe(cls, value: Any) -> Any:
        # `recipe: cifar10_he2015` or `recipe: {name: cifar10_he2015, max_steps: 600, ...}`.
        name = value if isinstance(value, str) else value.get("name") if isinstance(value, dict) else None
        if not isinstance(name, str):
            raise ValueError("expected a recipe name or a mapping with 'name' and fields to override")
        if name not in RECIPES:
            raise ValueError(f"unknown recipe '{name}': expected one of {', '.join(RECIPES)}")
        overrides = value if isinstance(value, dict) else {}
        return {**RECIPES[name].model_dump(), **overrides}

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})[:5]
            raise ValueError(f"seeds must be distinct; repeated: {repeated}")
        return seeds

    @model_validator(mode="after")
    def _trial_count(self) -> "Suite":
        grid = self.grid
        count = len(self.model_names()) * len(grid.shortcut or [None]) * len(grid.preact) * len(self.seeds)
        if count > MAX_TRIALS:
            raise ValueError(f"the grid and seeds expand to {count:,} trials; a suite holds at most {MAX_TRIALS:,}")
        return self

    @model_validator(mode="after")
    def _imagenet_loader(self) -> "Suite":
        if self.eval_ten_crop and self.data.dataset != "imagenet":
            raise ValueError("eval_ten_crop: 10-crop testing is for imagenet; CIFAR-10 is tested on the single original view (Section 4.2)")
        if self.data.dataset == "imagenet" and self.loader == "device":
            raise ValueError("loader: imagenet trains with 'ffcv' (.beton files, `python -m benchmark data write-beton "
                             "--dataset imagenet`) or 'torch' (ImageFolder + DataLoader); 'device' holds a whole "
                             "dataset in memory, for CIFAR-10 only")
        return self

    @model_validator(mode="after")
    def _data_parallel(self) -> "Suite":
        workers = self.resources.workers
        if self.sync_bn and (workers == 1 or self.resources.gpu == 0):
            raise ValueError("sync_bn: synchronised BN is for data-parallel GPU ranks (resources.workers > 1 and gpu > 0; "
                             "torch's SyncBatchNorm runs on GPUs only)")
        if workers == 1:
            return self
        if 0 < self.resources.gpu < 1:
            # Ray would pack two ranks onto one GPU, and NCCL refuses two ranks of a communicator on
            # the same device: the trial would fail through every Train and Tune retry.
            raise ValueError(f"resources.gpu: {self.resources.gpu:g} per worker shares a GPU between data-parallel "
                             "ranks, which NCCL cannot run; expected 0 (CPU ranks) or at least 1 GPU per worker")
        if self.recipe.batch_size % workers:
            raise ValueError(f"resources.workers: {workers} ranks cannot split the recipe's batch of "
                             f"{self.recipe.batch_size} evenly (each rank takes batch_size / workers)")
        if self.data.dataset == "cifar10" and self.loader != "device":
            raise ValueError(f"loader: data-parallel CIFAR-10 trials (resources.workers: {workers}) shard the "
                             "'device' loader by rank; use loader: device")
        return self

    @model_validator(mode="after")
    def _models_exist(self) -> "Suite":
        for index, name in enumerate(self.model_names()):
            _check_model(name, self.data.dataset, index, self.grid.model is not None)
        return self

    def model_names(self) -> list[str]:
        """The grid's models by registry name, in grid order."""
        if self.grid.model is not None:
            return list(self.grid.model)
        prefix = {"plain": "plain", "residual": "resnet"}
        return [f"{prefix[kind]}{depth}" for kind in self.grid.kind or [] for depth in self.grid.depth or []]

    def trials(self) -> list["Trial"]:
        """Expand the grid × seeds into trials (plain nets are not multiplied by `shortcut`)."""
        from benchmark.models import model_info

        trials = []
        for name in self.model_names():
            info = model_info(name)
            # The shortcut and pre-activation axes multiply the residual nets that take those
            # options; a relative whose paper fixes them (WRN, ResNeXt, ...) keeps its own.
            residual = info.kind == "residual"
            shortcuts = (self.grid.shortcut or [info.default_shortcut]) if residual and "shortcut" in info.options else [None]
            preacts = self.grid.preact if residual and "preact" in info.options else [False]
            for shortcut in shortcuts:
                for preact in preacts:
                    for seed in self.seeds:
                        trials.append(
                            Trial(
                                trial_id=trial_id(name, shortcut, preact, seed),
                                suite=self.name,
                                model=name,
                                family=info.family,
                                kind=info.kind,
                                depth=info.depth,
                                shortcut=shortcut,
                                preact=preact,
                                seed=seed,
                                data=self.data,
                                loader=self.loader,
                                recipe=self.recipe,
                                precision=self.precision,
                                channels_last=self.channels_last,
                                compile=self.compile,
                                tf32=self.tf32,
                                deterministic=self.deterministic,
                                eval_every=self.eval_every,
                                eval_batch_size=self.eval_batch_size,
                                eval_ten_crop=self.eval_ten_crop,
                                sync_bn=self.sync_bn,
                                resources=self.resources,
                            )
                        )
        return trials

    def smoke_sized(self) -> "Suite":
        """The same suite shrunk to `smoke`: a step cap and a data subset, under its own name."""
        data = self.data.model_copy(
            update={
                "train_subset": min(self.data.train_subset or self.smoke.train_subset, self.smoke.train_subset),
                "eval_subset": min(self.data.eval_subset or self.smoke.eval_subset, self.smoke.eval_subset),
            }
        )
        recipe = self.recipe.model_copy(update={"max_steps": min(self.recipe.max_steps, self.smoke.max_steps)})
        return self.model_copy(
            update={
                "name": f"{self.name}-smoke",
                "data": data,
                "recipe": recipe,
                "eval_every": min(self.eval_every, self.smoke.eval_every),
            }
        )


class Trial(_Strict):
    """One training run: model × data × recipe × seed × resources. Pure data; it pickles."""

    trial_id: str
    suite: str
    model: str
    family: str
    kind: Literal["plain", "residual", "highway", "dense"]  # benchmark.models.registry.Kind
    depth: int
    shortcut: str | None
    preact: bool
    seed: int
    data: DataSpec
    loader: str
    recipe: Recipe
    precision: str
    channels_last: bool
    compile: bool
    tf32: bool = False  # defaults as the Suite's: a trial stored before these fields existed reads as it ran
    deterministic: bool = False
    eval_every: int
    eval_batch_size: int
    eval_ten_crop: bool = False
    sync_bn: bool = False
    resources: Resources

    def model_options(self) -> dict[str, Any]:
        """Keyword options for `benchmark.models.build_model`."""
        options: dict[str, Any] = {}
        if self.shortcut is not None:
            options["shortcut"] = self.shortcut
        if self.preact:
            options["preact"] = True
        return options


def trial_id(model: str, shortcut: str | None, preact: bool, seed: int) -> str:
    """A stable, readable id: `resnet56-A-s0`, `resnet56-B-preact-s1`, `plain20-s0`."""
    parts = [model] + ([shortcut] if shortcut else []) + (["preact"] if preact else []) + [f"s{seed}"]
    return "-".join(parts)


def _check_model(name: str, dataset: str, index: int, named: bool) -> None:
    from benchmark.models import list_models, model_info

    where = f"grid.model[{index}]" if named else "grid.depth"
    known = list_models()
    if name not in known:
        if named:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; close matches: {', '.join(close)}" if close else f"; known models: {', '.join(known)}"
            raise ValueError(f"{where}: unknown model '{name}'{hint}")
        kind = "plain" if name.startswith("plain") else "resnet"
        depths = sorted(model_info(m).depth for m in known if m.startswith(kind) and model_info(m).family == _family(dataset))
        depth = name[len(kind):]
        raise ValueError(
            f"{where}: no {kind} net of depth {depth} for {dataset}: expected one of {', '.join(map(str, depths))}"
            + (" (CIFAR depths are 6n+2)" if dataset == "cifar10" else "")
        )
    family = model_info(name).family
    if family != _family(dataset):
        raise ValueError(f"{where}: model '{name}' is a {family} net; data.dataset is {dataset}")


def _family(dataset: str) -> str:
    return "cifar" if dataset == "cifar10" else "imagenet"


# ---------------------------------------------------------------------------------------- loading


def load_suite(path: str | Path, overrides: list[str] | tuple[str, ...] = (), smoke: bool = False) -> Suite:
    """Read, override and validate a suite file; every failure is one `SuiteError` line."""
    path = Path(path)
    raw = read_yaml(path)
    raw.setdefault("name", path.stem)
    for override in overrides:
        apply_override(raw, override, path)
    suite = validate_suite(raw, str(path))
    return suite.smoke_sized() if smoke else suite


def validate_suite(raw: dict[str, Any], source: str) -> Suite:
    try:
        return Suite.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(f"{source}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = _format_loc(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    elif "input" in error and error["type"] not in ("value_error",) and not isinstance(error["input"], dict):
        message = f"{message} (got {error['input']!r})"
    if message.startswith("grid.") or not loc:
        return message
    return f"{loc}: {message}"


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "dict") or part.startswith("function-"):
            continue  # pydantic's names for union members and validators, not the user's keys
        else:
            text += f".{part}" if text else str(part)
    return text


def fit_suite_precision(suite: Suite, strict: bool = False) -> tuple[Suite, str]:
    """The suite with its precision made concrete for the hardware its trials will run on, and a
    one-line note when a request was changed ("" otherwise).

    CPU trials (resources.gpu == 0) are judged by this machine's CPU (the driver's: on a Ray
    cluster of other machines, each trial's row records its own node's hardware). GPU trials by
    this machine's GPU when it has one; without one, `auto` means bf16, which every GPU the
    paper-sized suites are written for (A100, H100) computes natively.
    """
    if suite.resources.gpu == 0:
        identity = hardware.identify("cpu")
    else:
        import torch

        if not torch.cuda.is_available():
            return (suite.model_copy(update={"precision": "bf16"}), "") if suite.precision == "auto" else (suite, "")
        identity = hardware.identify("cuda")
    precision, note = hardware.resolve_precision(suite.precision, identity, strict)
    return suite.model_copy(update={"precision": precision}), note
