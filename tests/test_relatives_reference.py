"""The relatives' published numbers and recipes as data: values checked against their papers' tables,
the one number each model is compared with, and the named recipes."""

from __future__ import annotations

import pytest

from benchmark.analysis.reference import paper_table
from benchmark.analysis.reference.relatives import (
    SOURCES,
    is_paper_model,
    own_number,
    published_parameters,
    relatives_numbers,
)
from benchmark.models import list_models, model_info
from benchmark.suite.recipes import (
    CIFAR10_HE2016,
    CIFAR10_HUANG2017,
    CIFAR10_SRIVASTAVA2015,
    CIFAR10_XIE2017,
    CIFAR10_ZAGORUYKO2016,
    PAPER_RECIPES,
    RECIPES,
    Recipe,
)
from benchmark.training.schedule import LRSchedule


def _errors(source: str, table: str) -> dict[str, float]:
    frame = relatives_numbers()
    frame = frame[(frame["source"] == source) & (frame["table"] == table) & (frame["metric"] == "top1_error")]
    return {f"{m} [{s}]": v for m, s, v in zip(frame["method"], frame["statistic"], frame["value"])}


def test_identity_mappings_tables() -> None:
    # He et al. 2016, Table 1 (ResNet-110 shortcuts), Table 3 (pre-activation) and Table 4.
    assert _errors("he2016", "Table 1")["exclusive gating (b_g = -6) [single]"] == 8.70
    table3 = _errors("he2016", "Table 3")
    # The pre-activation rows of Table 3 are identity_mappings.csv's (one copy of each number).
    assert (table3["ResNet-110 (full pre-activation) [single]"], table3["ResNet-1001 original unit [single]"]) == (
        6.37, 7.61)
    assert (table3["ResNet-164 (full pre-activation) [single]"], table3["ResNet-1001 (full pre-activation) [single]"]) == (
        5.46, 4.92)
    table4 = _errors("he2016", "Table 4")
    assert table4 == {"ResNet-164 [median]": 5.46, "ResNet-1001 [median]": 4.92, "ResNet-1001 [mean]": 4.89,
                      "ResNet-1001 (batch 64) [median]": 4.62, "ResNet-1001 (batch 64) [mean]": 4.69}
    table2 = _errors("he2016", "Table 2")
    assert table2["ResNet-164 original unit [single]"] == 5.93 and table2["ResNet-110 BN after addition [single]"] == 8.17


def test_wide_resnext_and_densenet_tables() -> None:
    assert _errors("zagoruyko2016", "Table 5") == {"WRN-40-4 [median]": 4.53, "WRN-16-8 [median]": 4.27,
                                                   "WRN-28-10 [median]": 4.00}
    table6 = _errors("zagoruyko2016", "Table 6")
    assert (table6["WRN-16-4 [median]"], table6["WRN-28-10 with dropout [median]"]) == (5.02, 3.89)
    assert _errors("xie2017", "Table 7") == {"ResNeXt-29, 8x64d [mean]": 3.65, "ResNeXt-29, 16x64d [mean]": 3.58}
    densenet = _errors("huang2017", "Table 2")
    assert densenet["DenseNet-BC (k = 12), L = 100 [single]"] == 4.51
    assert densenet["DenseNet-BC (k = 40), L = 190 [single]"] == 3.46
    assert (published_parameters("wrn28_10"), published_parameters("resnext29_16x64d")) == (36.5e6, 68.1e6)
    assert published_parameters("densenet_bc100_12") == 0.8e6 and published_parameters("highway_resnet20") is None


def test_table_6_highway_and_fitnet_rows_are_the_papers_not_a_copy() -> None:
    # They live once, in paper.csv; relatives_numbers labels them with their source and our names.
    frame = relatives_numbers()
    cited = frame[(frame["table"] == "he2015 Table 6") & (frame["metric"] == "top1_error")]
    assert sorted(zip(cited["method"], cited["value"])) == sorted(
        zip(*paper_table(6).query("method in ['Highway', 'FitNet']")[["method", "value"]].to_numpy().T))
    assert set(cited["source"]) == {"srivastava2015", "romero2015"}
    assert set(cited["model"].dropna()) == {"highway19", "highway32"}


def test_each_model_is_compared_with_its_own_paper_only() -> None:
    frame = relatives_numbers()
    compared = frame[frame["compare"]]
    assert not compared.duplicated(["model", "preact_option", "metric"]).any()
    assert set(frame["source"]) <= set(SOURCES)
    for _, row in frame[frame["model"].notna()].iterrows():
        info = model_info(row["model"])  # every model named in the data is registered
        # A He et al. 2015 net in its pre-activation form belongs to Identity Mappings.
        expected = "he2016" if row["preact_option"] and info.paper == "he2015" else info.paper
        assert row["source"] == expected, (row["model"], row["table"])
    assert own_number("resnet110").value == 6.61 and own_number("resnet110").source == "he2015"  # the mean of 5
    assert own_number("resnet110", preact=True).value == 6.37
    assert own_number("highway19").value == 7.72  # the mean, not the best run's 7.54
    assert own_number("highway_resnet110").value == 8.70
    assert own_number("preact_resnet1001").value == 4.89  # batch 128's mean, not batch 64's 4.62
    assert own_number("wrn28_10").value == 4.00 and own_number("wrn28_10").label.startswith("Zagoruyko")
    assert own_number("resnext29_8x64d").n_runs == 10
    assert own_number("highway_resnet56") is None and own_number("resnet56", preact=True) is None


def test_paper_models_are_the_registrys() -> None:
    for name in list_models():
        assert is_paper_model(name) == (model_info(name).architecture == "resnet"), name
        assert model_info(name).paper in SOURCES


# ---------------------------------------------------------------- recipes


def test_relatives_recipes_are_their_papers() -> None:
    # WRN: Nesterov, batch 128, wd 5e-4, 200 epochs, x0.2 at epochs 60/120/160 (390 steps per epoch).
    wrn = CIFAR10_ZAGORUYKO2016
    assert (wrn.nesterov, wrn.batch_size, wrn.weight_decay, wrn.lr_decay) == (True, 128, 5e-4, 0.2)
    assert (wrn.max_steps, wrn.lr_milestones) == (78_000, (23_400, 46_800, 62_400))
    assert wrn.multistep_lr(62_400) == pytest.approx(0.1 * 0.2**3)
    # ResNeXt: wd 5e-4, 300 epochs, ÷10 at 150 and 225.
    assert (CIFAR10_XIE2017.weight_decay, CIFAR10_XIE2017.max_steps, CIFAR10_XIE2017.lr_milestones) == (
        5e-4, 117_000, (58_500, 87_750))
    # DenseNet: batch 64 (781 steps per epoch), 300 epochs, ÷10 at 50% and 75%, wd 1e-4, Nesterov.
    dense = CIFAR10_HUANG2017
    assert (dense.batch_size, dense.max_steps, dense.lr_milestones, dense.nesterov) == (
        64, 234_300, (117_150, 175_725), True)
    assert dense.lr_milestones == (dense.max_steps // 2, dense.max_steps * 3 // 4)
    assert (CIFAR10_SRIVASTAVA2015.lr, CIFAR10_SRIVASTAVA2015.batch_size) == (0.025, 100)
    assert set(PAPER_RECIPES.values()) <= set(RECIPES)


def test_identity_mappings_warms_every_net_up_for_400_iterations() -> None:
    for depth in (20, 164):
        schedule = LRSchedule.for_depth(CIFAR10_HE2016, depth)
        assert schedule.lr(0) == 0.01
        schedule.observe_train_error(380, 10.0)  # a low training error does not end it early
        assert schedule.lr(380) == 0.01
        schedule.observe_train_error(400, 10.0)
        assert schedule.lr(400) == 0.1


def test_nesterov_needs_momentum() -> None:
    with pytest.raises(ValueError, match="Nesterov's momentum needs a momentum above 0"):
        Recipe(name="x", lr=0.1, momentum=0.0, nesterov=True, weight_decay=0, batch_size=8, max_steps=1)
