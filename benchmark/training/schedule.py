"""The learning rate a recipe prescribes at each step, with the state that needs checkpointing.

Three rules from the paper: a step schedule (CIFAR, Section 4.2: ÷10 at 32k and 48k), division on a
plateau of the evaluation error (ImageNet, Section 3.4), and the ResNet-110 warm-up (Section 4.2:
lr 0.01 "until the training error is below 80% (about 400 iterations)", then back to 0.1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from benchmark.suite.recipes import Recipe


@dataclass
class LRSchedule:
    recipe: Recipe
    warming_up: bool = False
    plateau_scale: float = 1.0
    best_eval_error: float = float("inf")
    evals_without_progress: int = 0

    @classmethod
    def for_depth(cls, recipe: Recipe, depth: int) -> "LRSchedule":
        return cls(recipe=recipe, warming_up=recipe.warms_up(depth))

    def lr(self, step: int) -> float:
        if self.warming_up:
            assert self.recipe.warmup_lr is not None
            return self.recipe.warmup_lr
        if self.recipe.schedule == "plateau":
            return self.recipe.lr * self.plateau_scale
        return self.recipe.multistep_lr(step)

    def observe_train_error(self, step: int, train_error: float) -> None:
        """End the warm-up once the recent training error (percent) is below the threshold."""
        if self.warming_up and (
            train_error < self.recipe.warmup_until_train_error or step >= self.recipe.warmup_max_steps
        ):
            self.warming_up = False

    def observe_eval_error(self, eval_error: float) -> None:
        """Divide the learning rate when the evaluation error (percent) has plateaued."""
        if self.recipe.schedule != "plateau":
            return
        if eval_error < self.best_eval_error - self.recipe.plateau_threshold:
            self.best_eval_error = eval_error
            self.evals_without_progress = 0
            return
        self.evals_without_progress += 1
        if self.evals_without_progress >= self.recipe.plateau_patience:
            self.plateau_scale *= self.recipe.lr_decay
            self.evals_without_progress = 0

    def state_dict(self) -> dict[str, float | bool | int]:
        state = asdict(self)
        del state["recipe"]
        return state

    def load_state_dict(self, state: dict[str, float | bool | int]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
