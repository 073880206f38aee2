"""The time-budget planner on recorded step costs (never this machine's speed): planned for verdicts
from committed multi-seed evidence (issue 21), the scaled recipe, and `run --budget` (issue 13)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest

from benchmark.__main__ import main
from benchmark.analysis import findings
from benchmark.analysis.claims import load_claims
from benchmark.analysis.findings import Evidence
from benchmark.fleet import planner, verdict_plan
from benchmark.fleet.verdict_plan import Pair
from benchmark.fleet.planner import BudgetError, TrialCost
from benchmark.suite.recipes import CIFAR10_HE2015, CIFAR10_HE2015_SCALED, IMAGENET_HE2015, RECIPES
from benchmark.suite.spec import load_suite

# Seconds per step, per evaluation and to start, as measured on a 2-core CPU (one thread per trial).
COSTS = {
    "plain20": TrialCost(step_s=0.17, eval_s=1.2, start_s=12.0),
    "plain56": TrialCost(step_s=0.41, eval_s=3.1, start_s=14.0),
    "resnet20-A": TrialCost(step_s=0.18, eval_s=1.3, start_s=12.0),
    "resnet56-A": TrialCost(step_s=0.45, eval_s=3.4, start_s=14.0),
}

SUITE = """\
name: cpu
data: {dataset: cifar10, source: synthetic, eval_subset: 2000}
recipe: {name: cifar10_he2015_scaled, max_steps: 1200}
grid: {model: [plain20, plain56, resnet20, resnet56], shortcut: [A]}
resources: {cpu: 1}
precision: fp32
eval_every: 100
"""


@pytest.fixture
def suite_path(tmp_path: Path) -> Path:
    path = tmp_path / "cpu.yaml"
    path.write_text(SUITE)
    return path


def trials(suite_path: Path, slots: int = 2) -> list:
    return planner.execution_order(load_suite(suite_path).trials(), slots)


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("1h", 3600), ("1h30m", 5400), ("90s", 90), ("2.5h", 9000),
                                               ("45min", 2700)])
def test_budgets_read_as_durations(text: str, seconds: float) -> None:
    assert planner.parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "abc", "0m", "1d", "-5m"])
def test_a_budget_that_is_not_a_duration_is_one_line(text: str) -> None:
    with pytest.raises(BudgetError, match="--budget") as raised:
        planner.parse_budget(text)
    assert "\n" not in str(raised.value)


def test_expected_time_runs_trials_side_by_side_costliest_first(suite_path: Path) -> None:
    order = trials(suite_path)
    assert [t.model for t in order][:2] == ["plain56", "resnet56"]  # depth 56 first, as the Ray executor starts them
    costs = {k: TrialCost(step_s=1.0, eval_s=0.0, start_s=0.0) for k in COSTS}
    # two lanes, four equal trials of 10 steps: 2 x 10 s each, plus the suite's overhead
    assert planner.expected_seconds(order, costs, 10, 10, slots=2, overhead_s=5) == 25
    assert planner.expected_seconds(order, costs, 10, 10, slots=1, overhead_s=5) == 45


@pytest.mark.parametrize("budget_s", [8 * 60, 15 * 60, 30 * 60, 60 * 60, 4 * 3600])
@pytest.mark.parametrize("slots", [1, 2])
def test_a_plan_never_exceeds_its_budget_and_fills_it(suite_path: Path, budget_s: float, slots: int) -> None:
    order = trials(suite_path, slots)
    plan = planner.make_plan(order, COSTS, budget_s, slots=slots, eval_every=100, spent_s=20)
    assert plan.iterations % 100 == 0 and plan.iterations >= 100
    assert plan.spent_s + plan.expected_s <= budget_s
    # the most that fits: one more evaluation interval would not
    assert plan.spent_s + plan.seconds_for(plan.iterations + 100) > planner.MARGIN * budget_s


def test_more_budget_never_means_fewer_iterations(suite_path: Path) -> None:
    order = trials(suite_path)
    lengths = [planner.make_plan(order, COSTS, minutes * 60, 2, 100).iterations for minutes in range(10, 200, 7)]
    assert lengths == sorted(lengths)


def test_every_trial_gets_the_same_iterations_with_the_drops_scaled(suite_path: Path) -> None:
    suite = load_suite(suite_path)
    plan = planner.make_plan(trials(suite_path), COSTS, 1800, 2, 100)
    planned = suite.model_copy(update={"recipe": planner.scaled_recipe(suite.recipe, plan.iterations)})
    recipes = {t.recipe for t in planned.trials()}
    assert len(recipes) == 1
    recipe = recipes.pop()
    assert recipe.max_steps == plan.iterations and recipe.name == "cifar10_he2015_scaled"
    assert recipe.milestones() == (round(plan.iterations * 0.5), round(plan.iterations * 0.75))


def test_too_small_a_budget_names_the_smallest_that_works(suite_path: Path) -> None:
    order = trials(suite_path)
    with pytest.raises(BudgetError) as raised:
        planner.make_plan(order, COSTS, 120, 2, 100, spent_s=20)
    message = str(raised.value)
    assert "\n" not in message and "one evaluation interval (100 iterations)" in message
    smallest = message.rsplit("the smallest budget that works is ", 1)[1]
    assert planner.make_plan(order, COSTS, planner.parse_budget(smallest), 2, 100, spent_s=20).iterations == 100


def test_the_scaled_recipe_drops_at_the_papers_fractions() -> None:
    assert RECIPES["cifar10_he2015_scaled"] == CIFAR10_HE2015_SCALED
    paper = tuple(m / CIFAR10_HE2015.max_steps for m in CIFAR10_HE2015.lr_milestones)
    assert CIFAR10_HE2015_SCALED.lr_milestone_fractions == paper == (0.5, 0.75)
    assert CIFAR10_HE2015_SCALED.milestones() == CIFAR10_HE2015.lr_milestones  # at 64k it is the paper's recipe
    short = planner.scaled_recipe(CIFAR10_HE2015, 2100)
    assert short.name == "cifar10_he2015_scaled" and short.milestones() == (1050, 1575)
    assert short.multistep_lr(1049) == pytest.approx(0.1) and short.multistep_lr(1050) == pytest.approx(0.01)
    assert short.multistep_lr(1575) == pytest.approx(0.001)
    assert short.flat()["recipe_lr_milestones"] == "1050 1575"
    assert short.flat()["recipe_lr_milestone_fractions"] == "0.5 0.75"
    with pytest.raises(BudgetError, match="plateau"):
        planner.scaled_recipe(IMAGENET_HE2015, 1000)


def test_a_suite_overriding_the_length_of_the_scaled_recipe_keeps_the_fractions(suite_path: Path) -> None:
    suite = load_suite(suite_path, ["recipe.max_steps=3000"])
    assert suite.trials()[0].recipe.milestones() == (1500, 2250)


# Evidence as committed runs would give it (3 seeds: the worst of every choice of k of them).
EVIDENCE = [
    Evidence("degradation", "plain20", "plain56", 3, 200, 2000, "a"),
    Evidence("degradation", "plain20", "plain56", 2, 1000, 2000, "a"),
    Evidence("cure-training", "plain56", "resnet56-A", 3, 600, 2000, "a"),
    Evidence("cure-training", "plain56", "resnet56-A", 2, 0, 2000, "a"),   # never with 2 seeds
    Evidence("cure-training", "plain20", "resnet20-A", 3, 1800, 2000, "a"),
    Evidence("cure-training", "plain20", "resnet20-A", 2, 0, 2000, "a"),
]
PAIRS = [Pair("degradation", "plain20", "plain56"), Pair("cure-training", "plain20", "resnet20-A"),
         Pair("cure-training", "plain56", "resnet56-A")]


def seconds_for(costs: dict[str, TrialCost] = COSTS, slots: int = 2):  # noqa: ANN201
    """Expected seconds of `nets` x `seeds` trials (by cost alone: the planner's own arithmetic)."""
    def seconds(nets: tuple[str, ...], seeds: int, iterations: int) -> float:
        lanes = [0.0] * slots
        for net in sorted(nets, key=lambda n: -costs[n].step_s) * seeds:
            lanes[lanes.index(min(lanes))] += iterations * costs[net].step_s
        return max(lanes)
    return seconds


@pytest.mark.parametrize(("nets", "needs", "decided"), [
    (("plain20", "plain56"), 200, ["degradation"]),
    (("plain20", "plain56", "resnet56-A"), 600, ["degradation", "cure-training"]),               # the cure at 56
    (("plain20", "plain56", "resnet56-A", "resnet20-A"), 1800, ["degradation", "cure-training", "cure-training"]),
])
def test_the_plan_decides_the_cheapest_claims_first_with_three_seeds(nets: tuple[str, ...], needs: int,
                                                                      decided: list[str]) -> None:
    target_s = seconds_for()(nets, 3, needs)  # exactly what that plan is expected to take
    plan = verdict_plan.choose(PAIRS, EVIDENCE, 100, seconds_for(), target_s)
    assert plan is not None and (plan.seeds, plan.nets, plan.needs) == (3, nets, needs)
    assert [pair.claim for pair in plan.pairs] == decided
    assert len(verdict_plan.choose(PAIRS, EVIDENCE, 100, seconds_for(), target_s - 1).pairs) < len(decided) \
        if len(decided) > 1 else verdict_plan.choose(PAIRS, EVIDENCE, 100, seconds_for(), target_s - 1) is None


def test_two_seeds_only_where_three_do_not_fit_and_never_one() -> None:
    # Degradation with 2 seeds needs 1,000 iterations, with 3 seeds 200: 3 seeds fit first and win
    # whenever they fit. Evidence for 1 seed is never used.
    assert seconds_for()(("plain20", "plain56"), 2, 1000) > seconds_for()(("plain20", "plain56"), 3, 200)
    assert verdict_plan.choose(PAIRS, EVIDENCE, 100, seconds_for(), 170) is None
    only_two = [e for e in EVIDENCE if e.seeds == 2]
    plan = verdict_plan.choose(PAIRS, only_two, 100, seconds_for(), 600)
    assert plan is not None and (plan.seeds, plan.needs, plan.nets) == (2, 1000, ("plain20", "plain56"))
    one_seed = [dataclasses.replace(e, seeds=1) for e in EVIDENCE]
    assert verdict_plan.choose(PAIRS, one_seed, 100, seconds_for(), 1e9) is None


def test_the_budget_a_claim_needs_is_the_one_at_which_the_plan_takes_it() -> None:
    time_s, plan = verdict_plan.smallest_plan(PAIRS, EVIDENCE, 100, seconds_for(), containing=PAIRS[1])
    assert verdict_plan.choose(PAIRS, EVIDENCE, 100, seconds_for(), time_s) == plan and PAIRS[1] in plan.pairs
    assert PAIRS[1] not in verdict_plan.choose(PAIRS, EVIDENCE, 100, seconds_for(), time_s - 1).pairs
    lines = verdict_plan.pair_lines(PAIRS, verdict_plan.choose(PAIRS, EVIDENCE, 100, seconds_for(), 200), EVIDENCE,
                                    100, seconds_for(), lambda s: f"{s:.0f} s")
    assert lines[0] == ("degradation (plain20 → plain56): expected to be decided at 200 iterations with 3 seeds "
                        "(committed runs with 3 seeds, decided at every evaluation: a: from 200 to 2,000)")
    all_four = seconds_for()(("plain20", "plain56", "resnet56-A", "resnet20-A"), 3, 1800)
    assert lines[1] == (f"cure-training (plain20 → resnet20-A): not in this budget: needs {all_four:.0f} s "
                        "(plain20, plain56, resnet56-A, resnet20-A with 3 seeds, 1,800 iterations)")


def test_a_threshold_holds_in_every_committed_run_that_reached_it() -> None:
    rows = [Evidence("degradation", "plain20", "plain56", 3, 100, 2000, "cpu"),
            Evidence("degradation", "plain20", "plain56", 3, 200, 6000, "gpu")]
    assert findings.decidable_from("degradation", "plain20", "plain56", 3, rows) == 200
    # a run that never decided it pushes the threshold past its end; one that decided it later sets it
    rows[0] = dataclasses.replace(rows[0], decided_from=0)
    assert findings.decidable_from("degradation", "plain20", "plain56", 3, rows) == 2001
    assert findings.decidable_from("degradation", "plain20", "plain56", 3, rows[:1]) == math.inf
    assert findings.decidable_from("degradation", "plain20", "plain56", 2, rows) == math.inf  # not measured
    assert findings._decided_from([100, 200, 300, 400], [True, False, True, True]) == 300
    assert findings._decided_from([100, 200], [True, False]) == 0


def test_the_shipped_evidence_is_what_the_committed_results_say(tmp_path: Path) -> None:
    """reference/decidability.csv is written by `write_evidence` from the committed folders; it must agree."""
    repo = Path(__file__).resolve().parent.parent
    written = findings.write_evidence(repo, load_claims(), out=tmp_path / "decidability.csv")
    assert [Evidence(**{**row, **{k: int(row[k]) for k in ("seeds", "decided_from", "up_to")}})
            for row in csv.DictReader(written.open())] == findings.load_evidence()
    shipped = {(e.claim, e.first, e.second, e.seeds): e for e in findings.load_evidence()
               if e.source == "results/devbox-2cpu/figure6_cpu"}
    assert shipped[("degradation", "plain20", "plain56", 3)].decided_from == 100  # n=3 from the first evaluations


def test_run_budget_plans_from_measured_costs_and_prints_the_plan(
        suite_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(planner, "measure_costs", lambda suite, threads: COSTS)
    monkeypatch.setattr("benchmark.hardware.peak_tflops", lambda *args, **kwargs: 0.1)
    seen = {}
    monkeypatch.setattr("benchmark.fleet.runner.run_suite", lambda suite, **kwargs: seen.setdefault("suite", suite) and {})
    monkeypatch.setattr("benchmark.report.scorecard.print_scorecard", lambda folder: None)  # nothing ran
    assert main(["run", str(suite_path), "--budget", "30m", "--results", str(tmp_path / "results"), "--no-report"]) == 0
    out = capsys.readouterr().out
    iterations = seen["suite"].recipe.max_steps
    assert f"plan: {iterations:,} iterations per trial" in out and "budget 30m" in out
    assert "2 at a time" in out and "the paper's 32k and 48k of 64k, scaled" in out
    assert "degradation (plain20 → plain56): expected to be decided at" in out and "with 3 seeds" in out
    assert "depth-helps (resnet20-A → resnet56-A): about final errors: needs the paper's whole schedule" in out
    assert seen["suite"].seeds == [0, 1, 2]  # the plan's seeds, not the suite file's one
    assert seen["suite"].recipe.milestones() == (iterations // 2, iterations * 3 // 4)


def test_plan_only_prints_the_plan_and_trains_nothing(suite_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(planner, "measure_costs", lambda suite, threads: COSTS)
    monkeypatch.setattr("benchmark.hardware.peak_tflops", lambda *args, **kwargs: 0.1)
    assert main(["run", str(suite_path), "--budget", "1h", "--plan-only", "--results", str(tmp_path / "results")]) == 0
    assert "iterations per trial" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--plan-only"], "--plan-only prints the plan of a --budget"),
    (["--budget", "1m"], "too short to decide any of the paper's claims on this machine: degradation (plain20 → "
                         "plain56) needs plain20, plain56 with 3 seeds each for 200 iterations; the smallest budget"),
    (["--budget", "soon"], "expected a duration"),
    (["--budget", "30m", "--set", "resources.gpu=0.5"], "this suite asks for a GPU"),
    (["--budget", "30m", "--ray-address", "ray://head:10001"], "cannot plan for a Ray cluster"),
])
def test_run_budget_bad_input_is_one_line(suite_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    monkeypatch.setattr(planner, "measure_costs", lambda suite, threads: COSTS)
    monkeypatch.setattr("benchmark.hardware.peak_tflops", lambda *args, **kwargs: 0.1)
    assert main(["run", str(suite_path), *extra, "--results", str(tmp_path / "results"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "results").exists()


def test_a_started_results_folder_keeps_its_length(suite_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = load_suite(suite_path)
    folder = tmp_path / "results" / "cpu"
    (folder / "trials").mkdir(parents=True)
    first = suite.trials()[0]
    started = first.model_copy(update={"recipe": planner.scaled_recipe(first.recipe, 1700)})
    (folder / "trials" / f"{first.trial_id}.json").write_text(json.dumps({"trial": started.model_dump(mode="json")}))

    def no_measuring(*args: object) -> None:
        raise AssertionError("a resumed plan measures nothing")

    monkeypatch.setattr(planner, "measure_costs", no_measuring)
    lines: list[str] = []
    planned = planner.plan_suite(suite, 600, folder, slots=2, threads=1, out=lines.append)
    assert planned.recipe.max_steps == 1700 and planned.recipe.milestones() == (850, 1275)
    assert "was started with plain20 x 1 seed(s), 1,700 iterations" in lines[-1]
    assert [t.trial_id for t in planned.trials()] == [first.trial_id]  # the started trials, not a new plan
