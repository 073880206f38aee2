"""The paper's training recipes as named, cited constants.

A recipe is everything about optimisation that the paper fixes: optimizer, batch size, learning-rate
schedule, warm-up and the step budget. Suites name a recipe and may override any field; the
effective values are recorded with every trial (`Recipe.flat()` feeds the runs table).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator


class Recipe(BaseModel):
    """SGD with momentum and a step schedule, as in Sections 3.4 and 4.2."""

    # Strict (`max_steps: true` is not 1 step) and finite (`lr: .inf` is no learning rate): see spec.py.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    name: str
    lr: float = Field(gt=0)
    momentum: float = Field(ge=0, lt=1)
    # Nesterov's momentum (without dampening), as the WRN, ResNeXt and DenseNet papers train; the
    # ResNet paper uses the standard (heavy-ball) momentum of Caffe.
    nesterov: bool = False
    weight_decay: float = Field(ge=0)
    batch_size: int = Field(gt=0)
    max_steps: int = Field(gt=0)
    # "multistep": divide lr by `lr_decay` at each milestone (CIFAR, Section 4.2).
    # "plateau": divide lr by `lr_decay` when the evaluation error stops improving for
    # `plateau_patience` evaluations (ImageNet, Section 3.4: "divided by 10 when the error plateaus").
    schedule: Literal["multistep", "plateau"] = "multistep"
    lr_milestones: tuple[Annotated[int, Strict()], ...] = Field(default=(), strict=False)  # a YAML list becomes the tuple
    # A scaled schedule: the milestones as fractions of max_steps (instead of lr_milestones), so that
    # the drops fall at the same point of training whatever its length (`cifar10_he2015_scaled`).
    lr_milestone_fractions: tuple[Annotated[float, Strict()], ...] = Field(default=(), strict=False)
    lr_decay: float = Field(default=0.1, gt=0, le=1)
    plateau_patience: int = Field(default=3, gt=0)
    plateau_threshold: float = Field(default=0.1, ge=0)  # points of error that count as progress
    # Section 4.2: "for the 110-layer ResNet ... we use 0.01 to warm up the training until the
    # training error is below 80% (about 400 iterations), and then go back to 0.1". Applies to
    # models at least `warmup_min_depth` deep; None disables warm-up. A threshold of 0 is never
    # reached, so the warm-up lasts exactly `warmup_max_steps` (Identity Mappings: 400 iterations).
    warmup_lr: float | None = Field(default=None, gt=0)
    warmup_until_train_error: float = Field(default=80.0, ge=0, le=100)  # percent
    warmup_min_depth: int = Field(default=110, gt=0)
    warmup_check_every: int = Field(default=20, gt=0)  # steps between training-error checks
    warmup_max_steps: int = Field(default=5000, gt=0)  # a safety net: never warm up forever

    @model_validator(mode="after")
    def _milestones_sorted(self) -> "Recipe":
        if list(self.lr_milestones) != sorted(self.lr_milestones) or any(m <= 0 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones must be increasing positive steps, got {list(self.lr_milestones)}")
        fractions = list(self.lr_milestone_fractions)
        if fractions != sorted(set(fractions)) or any(not 0 < f < 1 for f in fractions):
            raise ValueError(f"lr_milestone_fractions must be increasing fractions between 0 and 1, got {fractions}")
        if fractions and self.lr_milestones:
            raise ValueError("give lr_milestones (steps) or lr_milestone_fractions (of max_steps), not both")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: Nesterov's momentum needs a momentum above 0")
        return self

    def milestones(self) -> tuple[int, ...]:
        """The steps at which the learning rate drops: lr_milestones, or the fractions of max_steps."""
        if self.lr_milestone_fractions:
            return tuple(round(f * self.max_steps) for f in self.lr_milestone_fractions)
        return self.lr_milestones

    def warms_up(self, depth: int) -> bool:
        """Whether a model of this depth starts with the warm-up learning rate."""
        return self.warmup_lr is not None and depth >= self.warmup_min_depth

    def multistep_lr(self, step: int) -> float:
        """The scheduled learning rate at `step` (0-based) for the multistep schedule."""
        passed = sum(1 for milestone in self.milestones() if step >= milestone)
        return self.lr * self.lr_decay**passed

    def flat(self) -> dict[str, object]:
        """The recipe as scalar columns for the runs table (`recipe_*`)."""
        row: dict[str, object] = {"recipe": self.name}
        for key, value in self.model_dump().items():
            if key == "name":
                continue
            if key == "lr_milestones":  # the effective steps, also for a scaled schedule
                value = " ".join(str(m) for m in self.milestones())
            elif key == "lr_milestone_fractions":
                value = " ".join(f"{f:g}" for f in value)
            row[f"recipe_{key}"] = value
        return row


def _recipe_columns() -> tuple[str, ...]:
    """The runs table's recipe columns: `recipe` and `recipe_<field>` for every field, in order."""
    return ("recipe", *(f"recipe_{name}" for name in Recipe.model_fields if name != "name"))


RECIPE_COLUMNS = _recipe_columns()


# Section 4.2 (CIFAR-10): "We use a weight decay of 0.0001 and momentum of 0.9 ... mini-batch size
# of 128 ... start with a learning rate of 0.1, divide it by 10 at 32k and 48k iterations, and
# terminate training at 64k iterations". ResNet-110 (and deeper) warm up at 0.01.
CIFAR10_HE2015 = Recipe(
    name="cifar10_he2015",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    batch_size=128,
    max_steps=64_000,
    schedule="multistep",
    lr_milestones=(32_000, 48_000),
    lr_decay=0.1,
    warmup_lr=0.01,
    warmup_until_train_error=80.0,
    warmup_min_depth=110,
)

# The same recipe with its learning-rate drops at the same fractions of training, for runs shorter
# than 64k iterations (the time-budgeted CPU suite, benchmark/fleet/planner.py): divided by 10 at 50% and
# 75% of max_steps, as 32k and 48k are of 64k. A variant of ours, not the paper's; reports say so.
CIFAR10_HE2015_SCALED = CIFAR10_HE2015.model_copy(update={
    "name": "cifar10_he2015_scaled", "lr_milestones": (), "lr_milestone_fractions": (0.5, 0.75),
})

# Section 3.4 (ImageNet): "SGD with a mini-batch size of 256. The learning rate starts from 0.1 and
# is divided by 10 when the error plateaus, and the models are trained for up to 60 × 10^4
# iterations. We use a weight decay of 0.0001 and a momentum of 0.9."
IMAGENET_HE2015 = Recipe(
    name="imagenet_he2015",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    batch_size=256,
    max_steps=600_000,
    schedule="plateau",
    lr_decay=0.1,
)

# ----------------------------------------------------------------------- the relatives' recipes
# Each relative's own paper, so that a relative is also compared with its paper under its paper's
# recipe (suites/relatives_*.yaml). Their schedules are given in epochs of the 50,000 CIFAR-10
# training images; our recipes count iterations of full batches, as the loaders give them:
# 390 per epoch at batch 128 (50,000 // 128), 781 at batch 64, 500 at batch 100.
STEPS_PER_EPOCH_128 = 50_000 // 128
STEPS_PER_EPOCH_64 = 50_000 // 64

# Identity Mappings (He et al. 2016), appendix: "the same as those in [1] ... The learning rate
# starts from 0.1, and is divided by 10 at 32k and 48k iterations. Following [1], for all CIFAR
# experiments we warm up the training by using a smaller learning rate of 0.01 at the beginning 400
# iterations and go back to 0.1 after that ... The mini-batch size is 128 ..., the weight decay is
# 0.0001, the momentum is 0.9". For ResNet-164/1001 and the gated ResNet-110 of its Table 1.
CIFAR10_HE2016 = CIFAR10_HE2015.model_copy(
    update={"name": "cifar10_he2016", "warmup_until_train_error": 0.0, "warmup_min_depth": 1, "warmup_max_steps": 400}
)

# Wide ResNets (Zagoruyko & Komodakis 2016), "Implementation details": "SGD with Nesterov momentum
# ... The initial learning rate is set to 0.1, weight decay to 0.0005, dampening to 0, momentum to
# 0.9 and minibatch size to 128. On CIFAR learning rate dropped by 0.2 at 60, 120 and 160 epochs and
# we train for total 200 epochs."
CIFAR10_ZAGORUYKO2016 = Recipe(
    name="cifar10_zagoruyko2016",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    batch_size=128,
    max_steps=200 * STEPS_PER_EPOCH_128,
    schedule="multistep",
    lr_milestones=tuple(epoch * STEPS_PER_EPOCH_128 for epoch in (60, 120, 160)),
    lr_decay=0.2,
)

# ResNeXt (Xie et al. 2017), appendix A: "mini-batch size of 128, with a weight decay of 0.0005 and
# a momentum of 0.9. We start with a learning rate of 0.1 and train the models for 300 epochs,
# reducing the learning rate at the 150-th and 225-th epoch [by 10]. Other implementation details
# are as in [11]" (fb.resnet.torch, whose SGD is Nesterov's, without dampening).
CIFAR10_XIE2017 = Recipe(
    name="cifar10_xie2017",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    batch_size=128,
    max_steps=300 * STEPS_PER_EPOCH_128,
    schedule="multistep",
    lr_milestones=(150 * STEPS_PER_EPOCH_128, 225 * STEPS_PER_EPOCH_128),
    lr_decay=0.1,
)

# DenseNet (Huang et al. 2017), Section 4.2: "On CIFAR ... we train using batch size 64 for 300 ...
# epochs. The initial learning rate is set to 0.1, and is divided by 10 at 50% and 75% of the total
# number of training epochs ... we use a weight decay of 10^-4 and a Nesterov momentum of 0.9
# without dampening."
CIFAR10_HUANG2017 = Recipe(
    name="cifar10_huang2017",
    lr=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-4,
    batch_size=64,
    max_steps=300 * STEPS_PER_EPOCH_64,
    schedule="multistep",
    lr_milestones=(150 * STEPS_PER_EPOCH_64, 225 * STEPS_PER_EPOCH_64),
    lr_decay=0.1,
)

# Highway networks (Srivastava et al. 2015): the paper gives no CIFAR-10 schedule; this is the
# authors' released solver for their 19-layer net (flukeskywalker/highway-networks,
# examples/highways/cifar10-19layers/cifar10_solver.prototxt): Nesterov, base_lr 0.025, momentum
# 0.9, weight_decay 0.001, batch 100, lr x0.1 at 100k, 150k and 175k of 200k iterations. (Their
# Caffe file exempts biases from weight decay; our SGD decays every parameter, as for the others.)
CIFAR10_SRIVASTAVA2015 = Recipe(
    name="cifar10_srivastava2015",
    lr=0.025,
    momentum=0.9,
    nesterov=True,
    weight_decay=1e-3,
    batch_size=100,
    max_steps=200_000,
    schedule="multistep",
    lr_milestones=(100_000, 150_000, 175_000),
    lr_decay=0.1,
)

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (CIFAR10_HE2015, CIFAR10_HE2015_SCALED, IMAGENET_HE2015, CIFAR10_HE2016, CIFAR10_ZAGORUYKO2016,
                   CIFAR10_XIE2017, CIFAR10_HUANG2017, CIFAR10_SRIVASTAVA2015)
}


# The recipe each paper trained its CIFAR-10 nets with, by the source keys of benchmark.analysis.reference
# (a relatives suite runs each net under the ResNet paper's recipe and under its own paper's).
PAPER_RECIPES: dict[str, str] = {
    "he2015": CIFAR10_HE2015.name,
    "he2016": CIFAR10_HE2016.name,
    "srivastava2015": CIFAR10_SRIVASTAVA2015.name,
    "zagoruyko2016": CIFAR10_ZAGORUYKO2016.name,
    "xie2017": CIFAR10_XIE2017.name,
    "huang2017": CIFAR10_HUANG2017.name,
}


def recipe_differences(recorded: Mapping[str, object]) -> dict[str, tuple[str, str]]:
    """How a trial's recipe, as recorded (`Recipe.flat()`'s columns: a runs.csv row or the flat dict
    itself), differs from the named recipe it says it is: {field: (named value, recorded value)}.
    A name that is not one of `RECIPES` is the difference {"recipe": ("a named recipe", name)}."""
    name = str(recorded.get("recipe") or "")
    named = RECIPES.get(name)
    if named is None:
        return {"recipe": ("a named recipe", name or "none")}
    differences = {}
    for column, expected in named.flat().items():
        if column != "recipe" and column in recorded and not _same(recorded[column], expected):
            differences[column.removeprefix("recipe_")] = (_text(expected), _text(recorded[column]))
    return differences


def _text(value: object) -> str:
    """A recorded value as text; None and a table's empty cell (NaN) are ""."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _same(recorded: object, expected: object) -> bool:
    """Equal as numbers (or lists of numbers, as runs.csv writes milestones), else as text; an empty
    cell equals None."""
    a, b = _text(recorded).strip(), _text(expected).strip()
    if a.lower() == b.lower():
        return True
    try:
        left, right = [float(v) for v in a.split()], [float(v) for v in b.split()]
    except ValueError:
        return False
    return len(left) == len(right) and all(abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1.0) for x, y in zip(left, right))
