"""Suite files: schema, overrides, smoke sizing and grid expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark import SuiteError
from benchmark.suite.recipes import CIFAR10_HE2015, IMAGENET_HE2015
from benchmark.suite.spec import load_suite

SUITES = sorted(Path(__file__).resolve().parent.parent.joinpath("suites").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MINIMAL = """
name: tiny
recipe: cifar10_he2015
grid: {model: [plain20, resnet20]}
"""


# suites/throughput*.yaml are profile configs (python -m benchmark profile --config), not suites.
@pytest.mark.parametrize("path", [p for p in SUITES if not p.name.startswith("throughput")], ids=lambda p: p.name)
def test_every_suite_file_in_the_repo_validates(path: Path) -> None:
    suite = load_suite(path)
    assert suite.trials(), f"{path} expands to no trials"
    assert suite.name == path.stem


def test_paper_recipes_are_the_papers_numbers() -> None:
    # Section 4.2 and Section 3.4.
    assert (CIFAR10_HE2015.lr, CIFAR10_HE2015.momentum, CIFAR10_HE2015.weight_decay) == (0.1, 0.9, 1e-4)
    assert (CIFAR10_HE2015.batch_size, CIFAR10_HE2015.max_steps, CIFAR10_HE2015.lr_milestones) == (128, 64_000, (32_000, 48_000))
    assert CIFAR10_HE2015.multistep_lr(31_999) == pytest.approx(0.1)
    assert CIFAR10_HE2015.multistep_lr(32_000) == pytest.approx(0.01)
    assert CIFAR10_HE2015.multistep_lr(48_000) == pytest.approx(0.001)
    assert CIFAR10_HE2015.warms_up(110) and not CIFAR10_HE2015.warms_up(56)
    assert (IMAGENET_HE2015.batch_size, IMAGENET_HE2015.max_steps, IMAGENET_HE2015.schedule) == (256, 600_000, "plateau")


def test_degradation_suite_expands_plain_nets_without_the_shortcut_axis() -> None:
    suite = load_suite(Path("suites/degradation.yaml"))
    ids = [t.trial_id for t in suite.trials()]
    assert ids == ["plain20-s0", "plain32-s0", "plain44-s0", "plain56-s0", "resnet20-A-s0", "resnet32-A-s0",
                   "resnet44-A-s0", "resnet56-A-s0", "resnet110-A-s0"]
    plain = suite.trials()[0]
    assert plain.shortcut is None and plain.kind == "plain" and plain.model_options() == {}


def test_grid_by_kind_and_depth_with_shortcuts_and_seeds(tmp_path: Path) -> None:
    path = write(tmp_path, """
recipe: cifar10_he2015
grid: {kind: [plain, residual], depth: [20, 56], shortcut: [A, B]}
seeds: [0, 1]
""", "grid.yaml")
    trials = load_suite(path).trials()
    # 2 plain models × 2 seeds + 2 residual models × 2 shortcuts × 2 seeds
    assert len(trials) == 4 + 8
    assert {t.trial_id for t in trials if t.model == "resnet56"} == {"resnet56-A-s0", "resnet56-A-s1", "resnet56-B-s0", "resnet56-B-s1"}
    assert load_suite(path).name == "grid"  # the file's stem when the suite has no name


def test_overrides_are_type_checked_and_reach_the_recipe(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    suite = load_suite(path, ["recipe.max_steps=600", "seeds=[0, 1, 2]", "data.source=synthetic", "resources.cpu=1"])
    assert suite.recipe.max_steps == 600 and suite.recipe.name == "cifar10_he2015"
    assert suite.recipe.lr == 0.1  # the rest of the named recipe stays
    assert suite.seeds == [0, 1, 2] and suite.data.source == "synthetic"
    with pytest.raises(SuiteError, match=r"s\.yaml: recipe\.max_steps: Input should be a valid integer"):
        load_suite(path, ["recipe.max_steps=lots"])
    with pytest.raises(SuiteError, match=r"recipe\.max_stepz: unknown key"):
        load_suite(path, ["recipe.max_stepz=5"])
    with pytest.raises(SuiteError, match=r"--set recipe: expected key=value"):
        load_suite(path, ["recipe"])


def test_smoke_shrinks_steps_data_and_cadence_under_its_own_name(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, MINIMAL), smoke=True)
    assert suite.name == "tiny-smoke"
    assert suite.recipe.max_steps == 60 and suite.data.train_subset == 2048 and suite.eval_every == 20


def test_trials_pickle_for_ray(tmp_path: Path) -> None:
    import pickle

    trial = load_suite(write(tmp_path, MINIMAL)).trials()[1]
    assert pickle.loads(pickle.dumps(trial)) == trial


def test_validate_accepts_every_file_in_suites(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.__main__ import main

    assert main(["validate", *map(str, SUITES), "--ray-address", "head:6379"]) == 0  # a cluster's suites too
    out = capsys.readouterr().out
    assert out.count("ok: ") == len(SUITES) and "throughput.yaml: profile config" in out
