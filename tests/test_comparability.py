"""What may stand beside the paper's numbers (issue 22): a changed recipe or a subset makes a final
error "not comparable", and seeds that diverged or failed never silently leave a claim "supported"."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.analysis.claims import load_claims
from benchmark.analysis.verdicts import SUPPORTED, UNDECIDED, evaluate_claims
from benchmark.report.tables import reproduction_table
from benchmark.results.read import load_results
from benchmark.suite.recipes import RECIPES, recipe_differences

HOLDS = Path(__file__).parent / "fixtures" / "results" / "claims" / "holds"


def edited(tmp_path: Path, change: dict[str, dict[str, str]]) -> Path:
    """The `holds` fixture (3 seeds of plain-20/56 and ResNet-20/56, the paper's whole schedule),
    with some cells of runs.csv changed: {trial_id: {column: value}}."""
    folder = tmp_path / "holds"
    shutil.copytree(HOLDS, folder)
    path = folder / "runs.csv"
    rows = list(csv.DictReader(path.open()))
    columns = list(rows[0]) + [c for cells in change.values() for c in cells if c not in rows[0]]
    for row in rows:
        row.update(change.get(row["trial_id"], {}))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(columns)), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def table6(folder: Path) -> dict[str, str]:
    table = reproduction_table(load_results(folder), 6)
    return dict(zip(table["variant"], table["verdict"]))


def verdicts(folder: Path) -> dict[str, object]:
    return {v.claim.id: v for v in evaluate_claims(load_results(folder), load_claims())}


def test_the_whole_schedule_on_the_papers_recipe_is_compared() -> None:
    assert table6(HOLDS)["resnet20-A"].startswith("within")


def test_a_changed_recipe_is_not_comparable_and_says_what_changed(tmp_path: Path) -> None:
    lr = {f"resnet20-A-s{seed}": {"recipe_lr": "0.05"} for seed in range(3)}
    verdict = table6(edited(tmp_path, lr))["resnet20-A"]
    assert verdict == "not comparable: recipe cifar10_he2015 changed: lr 0.1 → 0.05"
    assert verdicts(edited(tmp_path / "2", lr))["depth-helps"].verdict == UNDECIDED  # final errors: the same rule


@pytest.mark.parametrize(("column", "text"), [("train_subset", "trained on 2,000 images, not the whole training set"),
                                              ("eval_subset", "tested on 1,000 images, not the whole test set")])
def test_a_subset_is_not_comparable(tmp_path: Path, column: str, text: str) -> None:
    size = "2000" if column == "train_subset" else "1000"
    folder = edited(tmp_path, {f"resnet20-A-s{seed}": {column: size} for seed in range(3)})
    assert table6(folder)["resnet20-A"] == f"not comparable: {text}"


def test_subsets_are_read_from_the_trial_files_of_an_older_runs_csv(tmp_path: Path) -> None:
    folder = edited(tmp_path, {})  # no subset columns in runs.csv, as before they were recorded
    (folder / "trials").mkdir()
    for seed in range(3):
        config = {"trial": {"data": {"train_subset": None, "eval_subset": 2000}}}
        (folder / "trials" / f"resnet20-A-s{seed}.json").write_text(json.dumps(config))
    assert table6(folder)["resnet20-A"] == "not comparable: tested on 2,000 images, not the whole test set"


def test_recipe_differences_are_against_the_named_recipe() -> None:
    scaled = RECIPES["cifar10_he2015_scaled"]
    assert recipe_differences(scaled.flat()) == {}
    assert recipe_differences(scaled.model_copy(update={"max_steps": 2000}).flat()) == {
        "max_steps": ("64000", "2000"), "lr_milestones": ("32000 48000", "1000 1500")}
    assert recipe_differences({"recipe": "mine"}) == {"recipe": ("a named recipe", "mine")}


def test_the_fleet_fingerprints_the_subsets_it_trains_on(tmp_path: Path) -> None:
    from benchmark.fleet.dataset import resolve_data
    from benchmark.suite.spec import Suite

    def fingerprint(**subsets: int) -> str:
        suite = Suite.model_validate({"name": "s", "data": {"dataset": "cifar10", "source": "synthetic", **subsets},
                                      "recipe": "cifar10_he2015", "grid": {"model": ["resnet20"]}})
        return resolve_data(suite, tmp_path).fingerprint

    whole, part = fingerprint(), fingerprint(train_subset=500)
    assert whole != part and part == fingerprint(train_subset=500) and whole.split(":")[0] == part.split(":")[0]


def diverged(trial_ids: list[str]) -> dict[str, dict[str, str]]:
    return {t: {"status": "diverged", "final_train_error": "", "final_eval_error": ""} for t in trial_ids}


def test_a_seed_that_diverged_against_the_claim_keeps_it_from_being_supported(tmp_path: Path) -> None:
    # The cure: a ResNet-56 seed that diverged (its error at chance) is evidence against "ResNet-56
    # trains better than plain-56"; the two seeds left would support it.
    folder = edited(tmp_path, diverged(["resnet56-A-s2"]))
    cure = verdicts(folder)["cure-training"]
    at_56 = [c for c in cure.comparisons if c.second.net == "resnet56-A"][0]
    assert at_56.verdict == UNDECIDED and cure.verdict == UNDECIDED
    assert at_56.reason.startswith("supported by the seeds that finished, but resnet56-A left out seeds")
    assert at_56.left_out == "resnet56-A: 1 diverged left out"


def test_a_seed_that_diverged_for_the_claim_is_named_beside_the_verdict(tmp_path: Path) -> None:
    # Degradation: a plain-56 seed that diverged only strengthens "plain-56 trains worse".
    folder = edited(tmp_path, diverged(["plain56-s2"]))
    degradation = verdicts(folder)["degradation"]
    assert degradation.verdict == SUPPORTED  # 3 seeds of plain-20 against the 2 of plain-56 left
    assert degradation.reason == "the comparison supports it; left out: plain56: 1 diverged left out"


def test_a_failed_seed_on_either_side_keeps_a_claim_from_being_supported(tmp_path: Path) -> None:
    # The cure at 56 layers is 12 points wide: the seeds left would support it, but the failed
    # plain-56 seed could have ended anywhere.
    folder = edited(tmp_path, {"plain56-s1": {"status": "failed", "final_train_error": "", "final_eval_error": ""}})
    cure = verdicts(folder)["cure-training"]
    at_56 = [c for c in cure.comparisons if c.first.net == "plain56"][0]
    assert at_56.verdict == UNDECIDED and cure.verdict == UNDECIDED
    assert "plain56 left out seeds that could change the sign" in at_56.reason
    assert np.isfinite(at_56.difference) and at_56.first.n == 2  # the seeds that finished are still shown
