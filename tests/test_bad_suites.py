"""Bad suite files: one line naming the file and the key, exit status 2, nothing written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmark.__main__ import main

GOOD = """\
name: bad
data: {dataset: cifar10, source: synthetic}
recipe: {name: cifar10_he2015, max_steps: 4}
grid: {model: [resnet20]}
eval_every: 2
"""

# (case, suite text or None for GOOD, extra CLI args, words the one-line message must contain)
CASES = [
    ("syntax error", "name: bad\ngrid: {model: [resnet20]\n", [], ["line", "YAML syntax error"]),
    ("empty file", "", [], ["empty"]),
    ("top level is a list", "- resnet20\n", [], ["mapping"]),
    ("unknown key", GOOD + "grdi: {}\n", [], ["grdi", "unknown key"]),
    ("unknown nested key", GOOD.replace("eval_every: 2", "eval_every: 2\nresources: {cpus: 2}"), [], ["resources.cpus", "unknown key"]),
    ("wrong type", GOOD.replace("eval_every: 2", "eval_every: often"), [], ["eval_every", "integer"]),
    ("impossible value", GOOD.replace("eval_every: 2", "eval_every: 0"), [], ["eval_every", "greater than 0"]),
    ("unknown model", GOOD.replace("[resnet20]", "[resnet20, resnet57]"), [], ["grid.model[1]", "resnet57", "resnet56"]),
    ("impossible depth", GOOD.replace("{model: [resnet20]}", "{kind: [residual], depth: [20, 21]}"), [], ["grid.depth", "21", "6n+2"]),
    ("model of the wrong family", GOOD.replace("[resnet20]", "[resnet50]"), [], ["grid.model[0]", "resnet50", "imagenet"]),
    ("unknown shortcut", GOOD.replace("{model: [resnet20]}", "{model: [resnet20], shortcut: [D]}"), [], ["grid.shortcut[0]", "'D'"]),
    ("unknown recipe", GOOD.replace("name: cifar10_he2015,", "name: cifar100_he2015,"), [], ["recipe", "cifar100_he2015", "cifar10_he2015"]),
    ("unknown source", GOOD.replace("source: synthetic", "source: imagenet21k"), [], ["data", "imagenet21k", "jpeg75"]),
    ("duplicate seeds", GOOD + "seeds: [0, 0]\n", [], ["seeds", "distinct"]),
    ("bad override key", None, ["--set", "recipe.max_stepz=9"], ["recipe.max_stepz", "unknown key"]),
    ("bad override value", None, ["--set", "seeds=[0,"], ["--set seeds=[0,", "YAML"]),
    ("missing dataset", GOOD.replace("source: synthetic", "source: jpeg75, root: /nonexistent/cifar10_jpeg75.npz"), [], ["data", "/nonexistent"]),
    ("GPU requested where there is none", GOOD + "resources: {cpu: 1, gpu: 1}\n", [], ["resources.gpu", "0"]),
    ("fp16 on the CPU", GOOD + "precision: fp16\n", [], ["precision", "fp16"]),
    ("10-crop testing on CIFAR-10", GOOD + "eval_ten_crop: true\n", [], ["eval_ten_crop", "imagenet"]),
    ("duplicate key", GOOD + "eval_every: 4\n", [], ["duplicate key 'eval_every'", "line 6"]),
    ("duplicate model", GOOD.replace("[resnet20]", "[resnet20, plain20, resnet20]"), [], ["grid.model", "'resnet20' appears 2 times"]),
    ("a boolean step count", GOOD.replace("max_steps: 4", "max_steps: true"), [], ["recipe.max_steps", "valid integer", "True"]),
    ("an infinite learning rate", GOOD.replace("max_steps: 4", "max_steps: 4, lr: .inf"), [], ["recipe.lr", "finite"]),
    ("infinite CPUs", GOOD + "resources: {cpu: .inf}\n", [], ["resources.cpu", "finite"]),
    ("a bad custom resource", GOOD + "resources: {cpu: 1, custom: {GPU: 1}}\n", [], ["resources.custom", "'GPU'"]),
    ("a GPU count no trial can use", GOOD + "resources: {cpu: 1, gpu: 2}\n", [], ["resources.gpu", "2"]),
    ("tf32 that is not a boolean", GOOD + "tf32: maybe\n", [], ["tf32", "boolean"]),
    ("deterministic as a number", GOOD + "deterministic: 1\n", [], ["deterministic", "boolean"]),
]

# A "billion laughs": nine levels of nine aliases expand to 9**9 strings.
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


@pytest.mark.parametrize("case, text, words", [
    ("alias bomb in a free-text field", ALIAS_BOMB + GOOD.replace("name: bad", "name: bad\ndescription: *i"),
     ["more than 50,000 values once aliases are expanded"]),
    ("an alias that contains itself", GOOD + "description: &loop [*loop]\n", ["an alias refers to a value that contains it"]),
    ("a 20 MB seeds list", GOOD + "seeds: [" + ", ".join(map(str, range(2_500_000))) + "]\n", ["bytes; a suite file is at most 256 KiB"]),
    ("ten thousand and more trials", GOOD + "seeds: [" + ", ".join(map(str, range(10_001))) + "]\n", ["expand to 10,001 trials"]),
], ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None)
def test_hostile_suite_files_are_refused_within_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        case: str, text: str, words: list[str]) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    started = time.monotonic()
    assert main(["validate", str(path)]) == 2
    assert time.monotonic() - started < 30  # today's limits make it milliseconds; the old loader took minutes
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


@pytest.mark.parametrize("case, text, extra, words", CASES, ids=[c[0] for c in CASES])
def test_bad_suite_is_one_clear_line_exit_2_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            case: str, text: str | None, extra: list[str], words: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD if text is None else text)
    results, reports = tmp_path / "results", tmp_path / "reports"
    status = main(["run", str(path), "--executor", "local", "--results", str(results), "--reports", str(reports), *extra])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert err.count("\n") == 0, f"expected one line, got:\n{err}"
    assert err.startswith("error: ")
    assert str(path) in err or "--set" in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert not results.exists() and not reports.exists()


def test_validate_reports_each_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD + "grdi: 1\n")
    assert main(["validate", str(good)]) == 0
    assert "ok:" in capsys.readouterr().out
    assert main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "good.yaml" in captured.out and "bad.yaml: grdi: unknown key" in captured.err
