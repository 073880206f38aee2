"""The time-budget planner on recorded step costs (never this machine's speed), the scaled recipe, and
`run --budget` (issue 13)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmark.__main__ import main
from benchmark.analysis import findings
from benchmark.analysis.findings import Observation
from benchmark.fleet import planner
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


def test_findings_say_what_the_length_shows_and_what_more_would_take() -> None:
    scaled = ("cifar10_he2015_scaled, bf16, drops at 500 and 750", "results/x")
    observed = (
        Observation("degradation", "plain56", "plain20", 1000, True, 20.0, 15.0, *scaled),
        Observation("deeper", "resnet20", "resnet56", 1000, False, -3.0, -1.0, *scaled),
        Observation("deeper", "resnet20", "resnet56", 3000, True, 1.5, 0.8, *scaled),
    )
    plan = planner.Plan(iterations=2000, expected_s=1200, budget_s=1800, spent_s=0, slots=2, costs={},
                        seconds_for=lambda n: n * 0.6)
    lines = findings.finding_lines(["plain20", "plain56", "resnet20", "resnet56"], 2000, planner.cost_text(plan),
                                   observations=observed)
    text = "\n".join(lines)
    assert lines[0].startswith("degradation: plain20 below plain56: expected (seen at 1,000 iterations, "
                               "cifar10_he2015_scaled, bf16, drops at 500 and 750: +20.0 points of training error")
    assert lines[1] == "cure: not measured yet: resnet20 below plain20, resnet56 below plain56"
    assert lines[2].startswith("deeper: resnet56 below resnet20: needs more iterations (seen at 3,000, not at 1,000")
    assert "about 30m00s here: --budget 34m" in text  # 3,000 x 0.6 s, within the planning margin
    longer = findings.finding_lines(["resnet20", "resnet56"], 3000, str, observations=observed)
    assert longer[0].startswith("degradation: not in this suite") and "expected (seen at 3,000" in longer[2]
    shorter = findings.finding_lines(["resnet20", "resnet56"], 900, str, observations=observed[1:2])
    assert shorter[2].startswith("deeper: resnet56 below resnet20: not seen up to 1,000 iterations")


def test_the_shipped_observations_are_what_the_committed_results_say() -> None:
    """OBSERVATIONS are typed out from the committed results folders by `observe`; they must agree."""
    repo = Path(__file__).resolve().parent.parent
    for source in {o.source for o in findings.OBSERVATIONS}:
        measured = {dataclasses.replace(o, source=source) for o in findings.observe(repo / source)}
        assert measured == {o for o in findings.OBSERVATIONS if o.source == source}


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
    assert "4 trials, 2 at a time" in out and "the paper's 32k and 48k of 64k, scaled" in out
    assert "degradation:" in out and "cure:" in out and "deeper:" in out
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
    (["--budget", "1m"], "the smallest budget that works is"),
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
    assert "was started with 1,700 iterations" in lines[-1]


def test_observations_are_read_from_a_finished_run(tmp_path: Path) -> None:
    rows = [  # model, final train error, final test error
        ("plain20", 30.0, 35.0), ("plain56", 60.0, 58.0), ("resnet20", 25.0, 31.0), ("resnet56", 24.0, 31.5),
    ]
    header = "trial_id,model,seed,status,recipe,precision,recipe_max_steps,recipe_lr_milestones,final_train_error,final_eval_error"
    lines = [header] + [f"{m}-s0,{m},0,completed,cifar10_he2015_scaled,bf16,2100,1050 1575,{train},{test}"
                        for m, train, test in rows]
    lines.append("resnet32-A-s0,resnet32,0,running,cifar10_he2015_scaled,bf16,2100,1050 1575,20.0,20.0")  # unfinished
    (tmp_path / "runs.csv").write_text("\n".join(lines) + "\n")
    observed = {(o.finding, o.baseline, o.better): o for o in findings.observe(tmp_path)}
    assert set(observed) == {("degradation", "plain56", "plain20"), ("cure", "plain20", "resnet20"),
                             ("cure", "plain56", "resnet56"), ("deeper", "resnet20", "resnet56")}
    degradation = observed[("degradation", "plain56", "plain20")]
    assert degradation.shown and (degradation.train_gap, degradation.test_gap, degradation.iterations) == (30.0, 23.0, 2100)
    assert degradation.setting == "cifar10_he2015_scaled, bf16, drops at 1,050 and 1,575"
    deeper = observed[("deeper", "resnet20", "resnet56")]
    assert not deeper.shown and (deeper.train_gap, deeper.test_gap) == (1.0, -0.5)  # test error says otherwise
