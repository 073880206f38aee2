"""``python -m benchmark list`` through the real entry point."""

from __future__ import annotations

import csv
import io
import json

import pytest

from benchmark.__main__ import main
from benchmark.models import list_models


@pytest.fixture(scope="module")
def csv_rows() -> list[dict[str, str]]:
    # Counting all 36 models takes a few seconds; do it once for the csv checks.
    with pytest.MonkeyPatch.context() as patch:
        buffer = io.StringIO()
        patch.setattr("sys.stdout", buffer)
        assert main(["list", "--format", "csv"]) == 0
    return list(csv.DictReader(io.StringIO(buffer.getvalue())))


@pytest.mark.slow
def test_list_table_names_every_model_with_paper_rounding(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert set(list_models()) <= set(lines)
    assert len(list_models()) == 36
    # Table 6's parameters, the exact count, and the forward mult-adds per image.
    assert lines["resnet20"][-4:] == ["32x32", "0.27M", "269,722", "40.6M"]
    assert lines["resnet110"][-3:] == ["1.7M", "1,727,962", "252.9M"]
    assert lines["resnet1202"][-3:] == ["19.4M", "19,421,274", "2.83G"]
    assert lines["resnet50"][1:7] == ["imagenet", "resnet", "residual", "50", "bottleneck", "B"]
    assert lines["resnet152"][-1] == "11.28G"
    assert lines["plain56"][6] == "-"  # plain nets have no shortcut
    # The relatives: architecture, kind, depth, block, shortcut, width, cardinality, growth rate.
    assert lines["wrn28_10"][2:10] == ["wide_resnet", "residual", "28", "basic", "-", "10", "-", "-"]
    assert lines["wrn28_10"][-3:] == ["36.5M", "36,479,194", "5.24G"]
    assert lines["resnext29_8x64d"][2:10] == ["resnext", "residual", "29", "bottleneck", "-", "64", "8", "-"]
    assert lines["densenet_bc100_12"][2:10] == ["densenet", "dense", "100", "dense", "-", "-", "-", "12"]
    assert lines["densenet_bc100_12"][-3:] == ["0.77M", "769,162", "287.9M"]
    assert lines["highway_resnet110"][2:7] == ["highway", "highway", "110", "basic", "A"]
    assert lines["preact_resnet1001"][-3:] == ["10.3M", "10,328,602", "1.49G"]
    # Aligned: the header and every model row have the same width and the same column starts.
    table = [line for line in out.splitlines() if line.split() and line.split()[0] in {"model", *list_models()}]
    assert len(table) == 37 and len({len(line) for line in table}) == 1
    family_at = table[0].index("family")
    assert all(line[family_at - 2 : family_at] == "  " and line[family_at] != " " for line in table)


def test_list_csv(csv_rows: list[dict[str, str]]) -> None:
    assert [row["name"] for row in csv_rows] == list_models()
    by_name = {row["name"]: row for row in csv_rows}
    assert int(by_name["resnet20"]["parameters"]) == 269_722
    assert int(by_name["resnet20"]["multiply_adds"]) == 40_551_040
    assert int(by_name["resnet56"]["parameters"]) == 853_018
    assert int(by_name["resnet1202"]["parameters"]) == 19_421_274
    assert int(by_name["resnet50"]["parameters"]) == 25_557_032
    assert int(by_name["plain20"]["parameters"]) == 269_722
    assert by_name["plain20"]["shortcut"] == "" and by_name["resnet18"]["shortcut"] == "A"
    assert (by_name["resnet18"]["family"], by_name["resnet18"]["resolution"]) == ("imagenet", "224")
    assert (by_name["resnet18"]["architecture"], by_name["resnet18"]["paper"], by_name["resnet18"]["width"]) == (
        "resnet", "he2015", "")
    wide = by_name["wrn16_4"]
    assert (wide["architecture"], wide["paper"], wide["width"], wide["cardinality"]) == (
        "wide_resnet", "zagoruyko2016", "4", "")
    assert (by_name["resnext29_16x64d"]["cardinality"], by_name["densenet_bc190_40"]["growth_rate"]) == ("16", "40")
    assert round(int(by_name["resnet34"]["multiply_adds"]) / 1e9, 1) == 3.6


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list_models()
    resnet101 = next(row for row in rows if row["name"] == "resnet101")
    assert resnet101["parameters"] == 44_549_160 and resnet101["depth"] == 101
    assert next(row for row in rows if row["name"] == "plain34")["shortcut"] is None


def test_list_unknown_format_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["list", "--format", "xml"])
    assert raised.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err
