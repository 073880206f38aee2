"""A CPU suite sized by time and planned for verdicts (`run --budget 30m`, what `make run` does without CUDA).

A fixed grid made "about half an hour" mean 20 minutes on one machine and 2 hours on another, and
spent it on one seed of five nets, which decides nothing (issues 13 and 21). So the planner:
1. measures each model's training step on this machine for a few seconds (`measure_costs`);
2. takes the paper's claims (`benchmark/analysis/reference/claims.yaml`) and, for each comparison
   the suite's nets allow, the iteration from which committed runs with 3 (or 2) seeds per net
   decided it with the scorecard's own test (`benchmark/analysis/findings.py`);
3. adds comparisons cheapest first (degradation, then the cure at 56 layers, then at 20), as long as
   the nets they need, with their seeds, reach the needed length within the budget
   (`plan_for_verdicts`); then gives every chosen trial ONE number of iterations (a comparison of
   depths is only fair at equal iterations), the most that fit (`make_plan`), with the recipe's
   learning-rate drops scaled to it (`cifar10_he2015_scaled`: 50% and 75%, as 32k and 48k of 64k).

Before training the plan is printed: nets, seeds, iterations, the expected time here, and for each
claim "expected to be decided at N iterations with k seeds" or what budget it would need. A suite
whose grid should be trained exactly as written runs without --budget.

`plan_for_verdicts` and `make_plan` are pure functions of recorded step costs (tested without timing
anything); `measure_costs` is the only part that times.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark import BenchmarkError
from benchmark.suite.recipes import CIFAR10_HE2015, Recipe

if TYPE_CHECKING:
    from benchmark.analysis.claims import Claim
    from benchmark.suite.spec import Suite, Trial

MARGIN = 0.9  # plan for 90% of what is left of the budget: trials side by side contend for memory bandwidth
# Start-up and wrap-up that do not scale with iterations, and each trial's start (its Ray worker,
# model and loaders), rounded up from the 2-core development machine: the committed 1,200-iteration
# run took 21m21s for trials that spanned 21m08s (Ray's start, the data and the report: 13 s), each
# trial's first step came 1-3 s after its start; with the machine loaded (load average 25) Ray's
# start alone took 35 s.
SUITE_OVERHEAD_S = 60.0
TRIAL_START_S = 10.0
MEASURE_S = 3.0  # timed seconds of training steps per model
EVAL_IMAGES = {"train50k": 10_000, "train45k": 5_000}  # the test set, or the paper's 5k validation split


class BudgetError(BenchmarkError):
    """A budget that cannot be parsed, or is too small for this suite on this machine."""


def parse_budget(text: str) -> float:
    """Seconds in `30m`, `1h`, `1h30m`, `90s`; a one-line BudgetError otherwise."""
    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)s)?\s*", text)
    if not text.strip() or not match or not any(match.groups()):
        raise BudgetError(f"--budget {text!r}: expected a duration such as 30m, 1h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise BudgetError(f"--budget {text!r}: must be longer than zero")
    return total


def duration(seconds: float) -> str:
    """`27m10s`, `1h05m`: the form --budget reads."""
    seconds = int(math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def budget_text(seconds: float) -> str:
    """A budget rounded up to whole minutes, as one would type it."""
    minutes = int(math.ceil(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


# --------------------------------------------------------------------------------- costs


@dataclass(frozen=True)
class TrialCost:
    """What one trial of a model costs on this machine: seconds per training step, per evaluation
    (all its evaluation images) and to start."""

    step_s: float
    eval_s: float
    start_s: float = TRIAL_START_S


def model_key(trial: Trial) -> str:
    """Trials that cost the same: the model and its options (seeds do not change the cost)."""
    return "-".join(str(p) for p in (trial.model, trial.shortcut, "preact" if trial.preact else None) if p)


def eval_images(suite: Suite) -> int:
    full = EVAL_IMAGES.get(suite.data.split, 10_000)
    return min(full, suite.data.eval_subset) if suite.data.eval_subset else full


def measure_costs(suite: Suite, threads: int, seconds: float = MEASURE_S) -> dict[str, TrialCost]:
    """Time each distinct model of `suite` on this machine's CPU with the trial's threads, precision,
    memory format and compilation, on a synthetic batch: two untimed steps (allocation; more when
    compiling), then training steps in alternating rounds, one step of each model per round, for
    about `seconds` per model (so that other users' bursts of load hit every model alike), the
    median step each; and one evaluation batch."""
    import torch

    from benchmark.models import build_model
    from benchmark.training.step import TrainStep, evaluate

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        steps, starts, examples = {}, {}, {}
        for trial in suite.trials():
            key = model_key(trial)
            if key in steps:
                continue
            started = time.perf_counter()
            torch.manual_seed(0)
            model = build_model(trial.model, **trial.model_options())
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # made-up data: a small lr
            steps[key] = TrainStep(model, optimizer, "cpu", trial.precision, channels_last=trial.channels_last,
                                   compile=trial.compile)
            batch = (torch.randn(trial.recipe.batch_size, 3, 32, 32), torch.randint(0, 10, (trial.recipe.batch_size,)))
            for _ in range(4 if trial.compile else 2):  # allocation, and compilation if asked
                steps[key].step(*batch)
            starts[key], examples[key] = time.perf_counter() - started, (trial, batch)
        times: dict[str, list[float]] = {key: [] for key in steps}
        while min(len(t) for t in times.values()) < 3 or sum(map(sum, times.values())) < seconds * len(steps):
            for key, step in steps.items():
                tick = time.perf_counter()
                step.step(*examples[key][1])
                times[key].append(time.perf_counter() - tick)
        costs = {}
        for key, step in steps.items():
            trial = examples[key][0]
            images = torch.randn(min(trial.eval_batch_size, 500), 3, 32, 32)
            tick = time.perf_counter()
            evaluate(step.model, [(images, torch.zeros(len(images), dtype=torch.int64))], "cpu", trial.precision,
                     trial.channels_last)
            eval_s = (time.perf_counter() - tick) / len(images) * eval_images(suite)
            costs[key] = TrialCost(step_s=statistics.median(times[key]), eval_s=eval_s, start_s=TRIAL_START_S + starts[key])
    finally:
        torch.set_num_threads(before)
    return costs


# --------------------------------------------------------------------------------- plan


def expected_seconds(trials: Sequence[Trial], costs: dict[str, TrialCost], iterations: int, eval_every: int,
                     slots: int, overhead_s: float = SUITE_OVERHEAD_S) -> float:
    """The suite's expected wall time: trials started in `trials`' order, each on the first of
    `slots` lanes to come free (what Ray Tune does with a concurrency limit), plus the overhead."""
    lanes = [0.0] * max(1, slots)
    evaluations = math.ceil(iterations / eval_every)
    for trial in trials:
        cost = costs[model_key(trial)]
        lane = lanes.index(min(lanes))
        lanes[lane] += cost.start_s + iterations * cost.step_s + evaluations * cost.eval_s
    return overhead_s + max(lanes)


@dataclass(frozen=True)
class Plan:
    iterations: int
    expected_s: float        # from now to the report, on this machine
    budget_s: float
    spent_s: float           # already spent when the plan was made (the measurement)
    slots: int
    costs: dict[str, TrialCost]
    seconds_for: Callable[[int], float]  # expected seconds for another number of iterations


def make_plan(trials: Sequence[Trial], costs: dict[str, TrialCost], budget_s: float, slots: int,
              eval_every: int, spent_s: float = 0.0, overhead_s: float = SUITE_OVERHEAD_S) -> Plan:
    """The most iterations (a multiple of `eval_every`) for which the suite is expected to end
    within MARGIN of what is left of `budget_s`; a BudgetError names the smallest budget that
    works when not even one evaluation interval fits."""
    def seconds(n: int) -> float:
        return expected_seconds(trials, costs, n, eval_every, slots, overhead_s)

    target = MARGIN * (budget_s - spent_s)
    if seconds(eval_every) > target:
        smallest = spent_s + seconds(eval_every) / MARGIN
        raise BudgetError(
            f"--budget {budget_text(budget_s)}: too short for one evaluation interval ({eval_every} iterations) of "
            f"the {len(trials)} trials on this machine; the smallest budget that works is {budget_text(smallest)}")
    fastest = min(cost.step_s for cost in costs.values())
    n = max(eval_every, int(target / fastest) // eval_every * eval_every)
    while n > eval_every and seconds(n) > target:
        # step down proportionally, then by single intervals near the answer
        guess = int(n * target / seconds(n)) // eval_every * eval_every
        n = guess if eval_every <= guess < n - eval_every else n - eval_every
    return Plan(iterations=n, expected_s=seconds(n), budget_s=budget_s, spent_s=spent_s, slots=slots,
                costs=costs, seconds_for=seconds)


def cost_text(plan: Plan) -> Callable[[int], str]:
    """What another number of iterations would take here, as the plan says it."""
    def cost_of(iterations: int) -> str:
        seconds = plan.seconds_for(iterations)
        return f"about {duration(seconds)} here: --budget {budget_text((plan.spent_s + seconds) / MARGIN)}"

    return cost_of


def scaled_recipe(recipe: Recipe, iterations: int) -> Recipe:
    """`recipe` shortened to `iterations` with its drops at the same fractions of training:
    `cifar10_he2015` becomes `cifar10_he2015_scaled` (50%, 75%); a recipe already given in
    fractions keeps them."""
    if recipe.schedule != "multistep":
        raise BudgetError(f"--budget: recipe {recipe.name} drops its learning rate on plateaus; only a step "
                          "schedule can be scaled to a length")
    fractions = recipe.lr_milestone_fractions or tuple(m / recipe.max_steps for m in recipe.lr_milestones)
    name = recipe.name if recipe.lr_milestone_fractions or recipe.name.endswith("_scaled") else f"{recipe.name}_scaled"
    return Recipe.model_validate({**recipe.model_dump(), "name": name, "max_steps": iterations,
                                  "lr_milestones": (), "lr_milestone_fractions": fractions})


# --------------------------------------------------------------------------------- the driver's step


def plan_suite(suite: Suite, budget_s: float, folder: Path, slots: int, threads: int, strict: bool = False,
               out: Callable[[str], None] = partial(print, flush=True)) -> Suite:
    """`suite` planned for verdicts within `budget_s` on this machine (the module's steps 1-3), and
    its plan printed. A results folder that already holds the suite keeps the nets, seeds and length
    it was started with (a resumed run must continue the same trials), so nothing is measured then."""
    from benchmark.hardware import identify, peak_tflops, with_threads
    from benchmark.suite.spec import fit_suite_precision

    started = time.monotonic()
    if suite.resources.gpu > 0:
        raise BudgetError("--budget sizes a CPU suite to this machine; this suite asks for a GPU "
                          "(use --set resources.gpu=0, or run it without --budget)")
    suite, note = fit_suite_precision(suite, strict)
    if note:
        out(note)
    if recorded := _recorded(suite, folder):
        iterations, models, seeds = recorded
        out(f"plan: {folder} was started with {', '.join(models)} x {len(seeds)} seed(s), {iterations:,} iterations "
            "per trial; continuing those (a new budget needs a new results folder: --results DIR)")
        return restricted(suite, models, seeds).model_copy(update={"recipe": scaled_recipe(suite.recipe, iterations)})
    hardware = with_threads(identify("cpu"), threads)
    peak_tflops(hardware, "fp32")  # the probe, cached for the trials' rows (they never probe)
    out(f"plan: measuring each model's training step for {MEASURE_S:.0f} s on {hardware.describe()} "
        f"({suite.precision}{', channels-last' if suite.channels_last else ''}{', compiled' if suite.compile else ''})")
    costs = measure_costs(suite, threads)
    suite, lines = plan_verdicts(suite, costs, budget_s, slots, spent_s=time.monotonic() - started)
    trials = execution_order(suite.trials(), slots)
    plan = make_plan(trials, costs, budget_s, slots, suite.eval_every, spent_s=time.monotonic() - started)
    planned = suite.model_copy(update={"recipe": scaled_recipe(suite.recipe, plan.iterations)})
    for line in describe(planned, plan) + lines:
        out(line)
    return planned


def plan_verdicts(suite: Suite, costs: dict[str, TrialCost], budget_s: float, slots: int,
                  spent_s: float = 0.0) -> tuple[Suite, list[str]]:
    """`suite` cut down to the nets and seeds that decide the most claims within the budget
    (`verdict_plan.choose`), and the plan's lines about each claim. A BudgetError names the smallest
    budget that decides anything when the budget decides nothing; a suite whose nets no claim
    compares keeps its grid."""
    from benchmark.analysis.claims import load_claims
    from benchmark.analysis.findings import load_evidence
    from benchmark.fleet.verdict_plan import choose, claim_pairs, pair_lines, smallest_plan

    claims, evidence = load_claims(), load_evidence()
    pairs = claim_pairs(claims, {trial_variant(t) for t in suite.trials()})

    def seconds(nets: tuple[str, ...], seeds: int, iterations: int) -> float:
        trials = execution_order(restricted(suite, nets, list(range(seeds))).trials(), slots)
        return expected_seconds(trials, costs, iterations, suite.eval_every, slots)

    def budget_for(needed_s: float) -> str:
        return f"--budget {budget_text((spent_s + needed_s) / MARGIN)} (about {duration(needed_s)} here)"

    choice = choose(pairs, evidence, suite.eval_every, seconds, MARGIN * (budget_s - spent_s))
    if choice is None and (smallest := smallest_plan(pairs, evidence, suite.eval_every, seconds)) is not None:
        time_s, step = smallest
        raise BudgetError(
            f"--budget {budget_text(budget_s)}: too short to decide any of the paper's claims on this machine: "
            f"{step.pairs[-1].label()} needs {', '.join(step.nets)} with {step.seeds} seeds each for {step.needs:,} "
            f"iterations; the smallest budget that decides it is {budget_for(time_s)}")
    lines = ["plan: the paper's claims at this length (each from the iteration at which committed runs with seeds "
             "decided it, docs/suites.md):"]
    lines += [f"  {line}" for line in pair_lines(pairs, choice, evidence, suite.eval_every, seconds, budget_for)]
    lines += [f"  {line}" for line in final_claim_lines(claims, suite, seconds, budget_for)]
    if choice is None:
        return suite, lines + ["plan: no claim of the paper is decidable with these nets; every trial of the grid runs"]
    return restricted(suite, choice.nets, list(range(choice.seeds))), lines


def final_claim_lines(claims: Sequence[Claim], suite: Suite, seconds: Callable[[tuple[str, ...], int, int], float],
                      budget_for: Callable[[float], str]) -> list[str]:
    """The claims about final errors that the suite's nets bear on: they need the paper's whole schedule."""
    nets = {trial_variant(t) for t in suite.trials()}
    lines = []
    for claim in claims:
        pairs = claim.pairs(nets) if claim.judged == "final" and claim.dataset == suite.data.dataset else []
        if pairs:
            chain = tuple(dict.fromkeys(net for pair in pairs for net in pair))
            lines.append(f"{claim.id} ({' → '.join(chain)}): about final errors: needs the paper's whole schedule, "
                         f"{CIFAR10_HE2015.max_steps:,} iterations, with 3 seeds: "
                         f"{budget_for(seconds(chain, 3, CIFAR10_HE2015.max_steps))}")
    return lines


def trial_variant(trial: Trial) -> str:
    """The trial's net as the report and the claims name it: model[-A|-B|-C][-preact]."""
    from benchmark.models import model_info

    residual = model_info(trial.model).kind == "residual"
    return trial.model + (f"-{trial.shortcut}" if residual and trial.shortcut else "") + ("-preact" if trial.preact else "")


def restricted(suite: Suite, nets: Sequence[str], seeds: Sequence[int]) -> Suite:
    """`suite` with only the models of `nets` (their variants' models, in the grid's order) and `seeds`."""
    from benchmark.suite.spec import Grid

    models = list(dict.fromkeys(t.model for t in suite.trials() if trial_variant(t) in nets or t.model in nets))
    grid = Grid(model=models, shortcut=suite.grid.shortcut, preact=suite.grid.preact)
    return suite.model_copy(update={"grid": grid, "seeds": list(seeds)})


def execution_order(trials: list[Trial], slots: int) -> list[Trial]:
    """The order the fleet starts trials in: the Ray executor's, costliest (steps x depth) first;
    one at a time (the local executor), the suite's order."""
    from benchmark.fleet.recorder import trial_work

    return sorted(trials, key=trial_work, reverse=True) if slots > 1 else list(trials)


def _recorded(suite: Suite, folder: Path) -> tuple[int, list[str], list[int]] | None:
    """(iterations, models, seeds) the suite's trials were registered with in `folder`, if it holds
    any (a damaged trial file is left for the fleet's checks to name)."""
    iterations, models, seeds = None, [], set()
    for path in sorted((folder / "trials").glob("*.json")) if (folder / "trials").is_dir() else []:
        try:
            stored = json.loads(path.read_text())["trial"]
            iterations = iterations or int(stored["recipe"]["max_steps"])
            models.append(str(stored["model"]))
            seeds.add(int(stored["seed"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if iterations is None:
        return None
    order = [t.model for t in suite.trials()]
    return iterations, sorted(set(models), key=lambda m: order.index(m) if m in order else len(order)), sorted(seeds)


def describe(suite: Suite, plan: Plan) -> list[str]:
    """The plan as printed before training."""
    trials = suite.trials()
    recipe = suite.recipe
    drops = " and ".join(f"{m:,}" for m in recipe.milestones())
    speeds = ", ".join(f"{key} {cost.step_s:.2f}" for key, cost in plan.costs.items())
    evals = math.ceil(plan.iterations / suite.eval_every)
    eval_s = max(cost.eval_s for cost in plan.costs.values())
    paper = " and ".join(f"{m // 1000}k" for m in CIFAR10_HE2015.lr_milestones)
    lines = [
        f"plan: {len(trials)} trials ({', '.join(dict.fromkeys(t.model for t in trials))} x {len(suite.seeds)} "
        f"seed{'s' if len(suite.seeds) > 1 else ''}), {plan.slots} at a time; seconds per training step here: {speeds}",
        f"plan: {plan.iterations:,} iterations per trial, {evals} evaluations (up to {eval_s:.1f} s each); "
        f"recipe {recipe.name}: lr {recipe.lr:g}, divided by {1 / recipe.lr_decay:g} at {drops} "
        f"(the paper's {paper} of {CIFAR10_HE2015.max_steps // 1000}k, scaled)",
        f"plan: expected {duration(plan.spent_s + plan.expected_s)} on this machine, budget {budget_text(plan.budget_s)}",
    ]
    return lines
