"""The relatives suites and report: every net under the ResNet paper's recipe and each under its own
paper's, a smoke run end to end on synthetic data, and the report's numbers worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.__main__ import main
from benchmark.models import list_models, model_info
from benchmark.report import build_report, tables
from benchmark.report.relatives import paper_nets, relatives_table, throughput_table
from benchmark.results.read import load_results
from benchmark.results.tables import ResultsWriter
from benchmark.suite.profile_grid import load_config
from benchmark.suite.recipes import PAPER_RECIPES
from benchmark.suite.spec import load_suite

SUITES = Path(__file__).resolve().parent.parent / "suites"
OWN_RECIPE_SUITES = ["relatives_he2016", "relatives_zagoruyko2016", "relatives_xie2017", "relatives_huang2017",
                     "relatives_srivastava2015"]


def test_every_net_on_the_resnet_recipe_and_each_on_its_own() -> None:
    common = load_suite(SUITES / "relatives.yaml")
    models = set(common.model_names())
    # The issue's six, and Table 6's highway nets.
    assert {"resnet110", "highway_resnet110", "preact_resnet164", "wrn28_10", "resnext29_8x64d",
            "densenet_bc100_12", "highway19", "highway32"} == models
    assert {trial.recipe.name for trial in common.trials()} == {"cifar10_he2015"}
    assert len(common.seeds) >= 3
    own = set()
    for name in OWN_RECIPE_SUITES:
        suite = load_suite(SUITES / f"{name}.yaml")
        for trial in suite.trials():
            info = model_info(trial.model)
            paper = "he2016" if trial.preact and info.paper == "he2015" else info.paper
            assert trial.recipe.name == PAPER_RECIPES[paper], (name, trial.trial_id)
            own.add(trial.model)
    assert models - {"resnet110"} <= own  # ResNet-110's own recipe is the common one


def test_cpu_suite_is_the_gate_against_the_identity() -> None:
    suite = load_suite(SUITES / "relatives_cpu.yaml")
    assert suite.model_names() == ["resnet20", "highway_resnet20"] and suite.recipe.max_steps <= 1000
    assert [t.trial_id for t in suite.trials()] == ["resnet20-A-s0", "resnet20-A-s1", "highway_resnet20-s0",
                                                    "highway_resnet20-s1"]
    assert all(t.kind == ("highway" if t.model.startswith("highway") else "residual") for t in suite.trials())


def test_axes_multiply_only_the_nets_that_take_them(tmp_path: Path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text("recipe: cifar10_he2015\ngrid: {model: [resnet20, wrn16_4, highway_resnet20], "
                    "shortcut: [A, B], preact: [false, true]}\n")
    ids = [trial.trial_id for trial in load_suite(path).trials()]
    assert ids == ["resnet20-A-s0", "resnet20-A-preact-s0", "resnet20-B-s0", "resnet20-B-preact-s0",
                   "wrn16_4-s0", "highway_resnet20-s0"]


def test_throughput_config_profiles_every_relative() -> None:
    # The performance item: `profile` rows for every new model, beside the paper's ResNets.
    config = load_config(SUITES / "throughput_relatives.yaml")
    relatives = {name for name in list_models() if model_info(name).architecture != "resnet"}
    assert relatives <= set(config.models) and {"resnet20", "resnet110"} <= set(config.models)
    assert set(config.modes) == {"train", "infer"} and config.precisions == ("fp32",)


TINY = """\
name: relatives_tiny
data: {dataset: cifar10, source: synthetic, train_subset: 64, eval_subset: 32}
loader: device
recipe: {name: cifar10_huang2017, batch_size: 8, max_steps: 2}
grid: {model: [highway_resnet20, wrn16_4, densenet_bc100_12]}
seeds: [0]
resources: {cpu: 1}
eval_every: 2
eval_batch_size: 32
"""


@pytest.mark.slow
def test_relatives_smoke_suite_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DenseNet's recipe (Nesterov, batch 64 shrunk to 8) on a gated, a wide and a dense net.
    built = []
    sgd = torch.optim.SGD

    def spy(*args, **kwargs):
        built.append(kwargs.get("nesterov"))
        return sgd(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    suite = tmp_path / "relatives_tiny.yaml"
    suite.write_text(TINY)
    status = main(["run", str(suite), "--executor", "local", "--results", str(tmp_path / "results"),
                   "--reports", str(tmp_path / "reports")])
    assert status == 0
    assert built == [True, True, True]  # the recipe's Nesterov momentum reaches the optimizer
    runs = pd.read_csv(tmp_path / "results" / "relatives_tiny" / "runs.csv")
    assert list(runs["kind"]) == ["highway", "residual", "dense"] and set(runs["status"]) == {"completed"}
    assert runs["recipe_nesterov"].all() and (runs["recipe"] == "cifar10_huang2017").all()
    results = load_results(tmp_path / "results" / "relatives_tiny")
    table = relatives_table(results).set_index("variant")
    assert table.loc["wrn16_4", "paper"] == 5.02 and table.loc["densenet_bc100_12", "paper"] == 4.51
    assert bool(table.loc["densenet_bc100_12", "own_recipe"]) and not bool(table.loc["wrn16_4", "own_recipe"])
    assert table.loc["wrn16_4", "parameters"] == 2_748_890 and table.loc["wrn16_4", "published_parameters"] == 2.7e6
    report = (tmp_path / "reports" / "relatives_tiny" / "report.md").read_text()
    assert "## The paper's relatives" in report and "figures/relatives_error.png" in report
    assert (tmp_path / "reports" / "relatives_tiny" / "figures" / "relatives_error.svg").is_file()
    assert "Table 6: CIFAR-10" not in report  # no net of the paper's own: no reproduction of its tables


def _write_results(folder: Path) -> None:
    """Final errors chosen so that every number below is easy to work out by hand."""
    writer = ResultsWriter(folder)
    trials = [
        # trial_id, model, kind, depth, shortcut, preact, seed, recipe, steps run, final error, status
        ("resnet110-A-s0", "resnet110", "residual", 110, "A", False, 0, "cifar10_he2015", 64_000, 7.0, "completed"),
        ("resnet110-A-s1", "resnet110", "residual", 110, "A", False, 1, "cifar10_he2015", 64_000, 8.0, "completed"),
        ("resnet110-A-preact-s0", "resnet110", "residual", 110, "A", True, 0, "cifar10_he2016", 64_000, 7.0,
         "completed"),
        ("highway_resnet110-s0", "highway_resnet110", "highway", 110, None, False, 0, "cifar10_he2015", 64_000, 9.5,
         "completed"),
        ("wrn28_10-s0", "wrn28_10", "residual", 28, None, False, 0, "cifar10_he2015", 64_000, 4.5, "completed"),
        ("wrn28_10-s1", "wrn28_10", "residual", 28, None, False, 1, "cifar10_he2015", 64_000, 5.5, "completed"),
        ("wrn28_10-s2", "wrn28_10", "residual", 28, None, False, 2, "cifar10_he2015", 30_000, float("nan"),
         "diverged"),
        # DenseNet's own recipe runs 234,300 iterations: 600 of them are no final error.
        ("densenet_bc100_12-s0", "densenet_bc100_12", "dense", 100, None, False, 0, "cifar10_huang2017", 600, 40.0,
         "completed"),
    ]
    for trial_id, model, kind, depth, shortcut, preact, seed, recipe, steps, error, status in trials:
        writer.add_metrics(trial_id, {"step": 100, "epoch": 1.0, "lr": 0.1, "train_loss": 1.0, "train_error": 30.0,
                                      "eval_loss": 1.0, "eval_error": error, "eval_top5_error": 1.0,
                                      "eval_split": "test", "images_per_s": 100.0, "wall_s": 1.0})
        writer.update_run(trial_id, suite="relatives_mini", model=model, family="cifar", kind=kind, depth=depth,
                          shortcut=shortcut, preact=preact, seed=seed, status=status, steps=steps, final_eval_error=error,
                          final_train_error=30.0, dataset="cifar10", data_source="torchvision", eval_split="test",
                          device="cpu", recipe=recipe, images_per_s=100.0)
    (folder / "throughput.csv").write_text(
        "model,mode,batch_size,precision,channels_last,compiled,images_per_s,device_name,measured_at\n"
        "wrn28_10,train,32,fp32,false,false,10.0,AMD EPYC,2026-01-01T10:00:00\n"
        "wrn28_10,train,32,fp32,false,false,12.0,AMD EPYC,2026-01-02T10:00:00\n"
        "wrn28_10,infer,32,fp32,false,false,40.0,AMD EPYC,2026-01-02T10:00:00\n"
        "resnet20,train,32,fp32,false,false,500.0,AMD EPYC,2026-01-02T10:00:00\n")


def test_relatives_report_numbers(tmp_path: Path) -> None:
    _write_results(tmp_path / "relatives_mini")
    results = load_results(tmp_path / "relatives_mini")
    table = relatives_table(results).set_index("variant")
    # WRN-28-10: 4.5 and 5.5 (the diverged seed not averaged): 5.0 ± 0.71 against WRN Table 5's 4.00.
    wide = table.loc["wrn28_10"]
    assert (wide["n"], wide["mean"], wide["paper"], wide["difference"]) == (2, 5.0, 4.00, 1.0)
    assert wide["std"] == pytest.approx(math.sqrt(0.5)) and wide["excluded"] == "1 diverged"
    assert "its paper used cifar10_zagoruyko2016" in wide["note"] and "median of 5 runs" in wide["note"]
    assert (wide["parameters"], wide["multiply_adds"], wide["published_parameters"]) == (36_479_194, 5_243_328_768, 36.5e6)
    # ResNet-110 against Table 6's mean 6.61; its pre-activation form against Identity Mappings' 6.37.
    assert table.loc["resnet110-A", "paper"] == 6.61 and table.loc["resnet110-A", "difference"] == pytest.approx(0.89)
    assert bool(table.loc["resnet110-A", "own_recipe"])
    preact = table.loc["resnet110-A-preact"]
    assert (preact["paper"], preact["difference"], bool(preact["own_recipe"])) == (6.37, pytest.approx(0.63), True)
    # The gated ResNet-110 against Identity Mappings' exclusive gating (Table 1, b_g = -6).
    assert table.loc["highway_resnet110", "paper"] == 8.70
    assert table.loc["highway_resnet110", "difference"] == pytest.approx(0.8)
    dense = table.loc["densenet_bc100_12"]
    assert dense["paper_source"] == "Huang et al. 2017 (DenseNet), Table 2" and dense["paper"] == 4.51
    assert (dense["mean"], bool(dense["comparable"])) == (40.0, False) and math.isnan(dense["difference"])
    assert "not comparable: 600 of 234,300 iterations" in dense["note"]
    assert wide["iterations"] == "64,000 of 64,000 iterations" and bool(wide["comparable"])
    # The paper's own tables see its own nets only.
    reproduction = tables.reproduction_table(paper_nets(results), 6)
    assert set(reproduction["model"]) == {"resnet110"}
    # Training throughput: the latest row per setting (12 replaced 10), training only, the results' models.
    speed = throughput_table(results)
    assert list(zip(speed["model"], speed["images_per_s"])) == [("wrn28_10", 12.0)]
    out = build_report(tmp_path / "relatives_mini", tmp_path / "report")
    markdown = (out / "report.md").read_text()
    assert ("| wrn28_10 | cifar10_he2015 | torchvision | 36.48M [36.5M] | 5.24G | 64,000 of 64,000 iterations | "
            "5.00 ± 0.71 (n=2, 4.50–5.50) | 4.00 ") in markdown
    section_6 = markdown.split("### Table 6")[1].split("##")[0]
    assert "resnet110-A" in section_6 and "wrn28_10" not in section_6 and "highway" not in section_6
