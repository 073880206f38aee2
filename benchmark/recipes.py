"""The paper's training recipes as named, cited constants.

A recipe is everything about optimisation that the paper fixes: optimizer, batch size, learning-rate
schedule, warm-up and the step budget. Suites name a recipe and may override any field; the
effective values are recorded with every trial (`Recipe.flat()` feeds the runs table).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator


class Recipe(BaseModel):
    """SGD with momentum and a step schedule, as in Sections 3.4 and 4.2."""

    # Strict (`max_steps: true` is not 1 step) and finite (`lr: .inf` is no learning rate): see spec.py.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    name: str
    lr: float = Field(gt=0)
    momentum: float = Field(ge=0, lt=1)
    weight_decay: float = Field(ge=0)
    batch_size: int = Field(gt=0)
    max_steps: int = Field(gt=0)
    # "multistep": divide lr by `lr_decay` at each milestone (CIFAR, Section 4.2).
    # "plateau": divide lr by `lr_decay` when the evaluation error stops improving for
    # `plateau_patience` evaluations (ImageNet, Section 3.4: "divided by 10 when the error plateaus").
    schedule: Literal["multistep", "plateau"] = "multistep"
    lr_milestones: tuple[Annotated[int, Strict()], ...] = Field(default=(), strict=False)  # a YAML list becomes the tuple
    lr_decay: float = Field(default=0.1, gt=0, le=1)
    plateau_patience: int = Field(default=3, gt=0)
    plateau_threshold: float = Field(default=0.1, ge=0)  # points of error that count as progress
    # Section 4.2: "for the 110-layer ResNet ... we use 0.01 to warm up the training until the
    # training error is below 80% (about 400 iterations), and then go back to 0.1". Applies to
    # models at least `warmup_min_depth` deep; None disables warm-up.
    warmup_lr: float | None = Field(default=None, gt=0)
    warmup_until_train_error: float = Field(default=80.0, gt=0, le=100)  # percent
    warmup_min_depth: int = Field(default=110, gt=0)
    warmup_check_every: int = Field(default=20, gt=0)  # steps between training-error checks
    warmup_max_steps: int = Field(default=5000, gt=0)  # a safety net: never warm up forever

    @model_validator(mode="after")
    def _milestones_sorted(self) -> "Recipe":
        if list(self.lr_milestones) != sorted(self.lr_milestones) or any(m <= 0 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones must be increasing positive steps, got {list(self.lr_milestones)}")
        return self

    def warms_up(self, depth: int) -> bool:
        """Whether a model of this depth starts with the warm-up learning rate."""
        return self.warmup_lr is not None and depth >= self.warmup_min_depth

    def multistep_lr(self, step: int) -> float:
        """The scheduled learning rate at `step` (0-based) for the multistep schedule."""
        passed = sum(1 for milestone in self.lr_milestones if step >= milestone)
        return self.lr * self.lr_decay**passed

    def flat(self) -> dict[str, object]:
        """The recipe as scalar columns for the runs table (`recipe_*`)."""
        row: dict[str, object] = {"recipe": self.name}
        for key, value in self.model_dump().items():
            if key == "name":
                continue
            if key == "lr_milestones":
                value = " ".join(str(m) for m in value)
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

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (CIFAR10_HE2015, IMAGENET_HE2015)}

