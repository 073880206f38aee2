"""The paper's claims judged from fixture results with known answers (tests/fixtures/results/claims/README.md).

Verdicts, effects and 95% intervals are checked as numbers. With equal spreads and n on both sides
Welch's interval has 2(n - 1) degrees of freedom, so the expected intervals use textbook quantiles.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from benchmark import ClaimsError
from benchmark.__main__ import main
from benchmark.analysis.claims import check_models, load_claims
from benchmark.analysis.verdicts import CONTRADICTED, SUPPORTED, UNDECIDED, Side, compare, evaluate_claims
from benchmark.report import build_report, tables
from benchmark.report.scorecard import scorecard_text
from benchmark.results.provenance import mixed_provenance, provenance_summary
from benchmark.results.read import load_results

FIXTURES = Path(__file__).parent / "fixtures" / "results"
CLAIMS = FIXTURES / "claims"
T4, T2 = 2.7764451051977987, 4.302652729749464  # Student's t 97.5% quantiles, 4 and 2 degrees of freedom
ROOT = Path(__file__).resolve().parent.parent


def _verdicts(folder: Path) -> dict[str, object]:
    return {v.claim.id: v for v in evaluate_claims(load_results(folder), load_claims())}


def test_packaged_claims_name_registered_models() -> None:
    claims = load_claims()
    check_models(claims, "benchmark/analysis/reference/claims.yaml")  # what load_claims skips for the packaged file
    ids = {claim.id for claim in claims}
    assert {"degradation", "cure-training", "cure-test", "depth-helps", "shortcut-options", "overfitting-1202",
            "residual-responses", "cure-imagenet"} <= ids
    assert all(claim.cites for claim in claims)


def test_degradation_holds_on_every_seed() -> None:
    verdicts = _verdicts(CLAIMS / "holds")
    degradation = verdicts["degradation"]
    assert degradation.verdict == SUPPORTED
    assert degradation.judged_at == "at the end of the paper's schedule (64,000 iterations)"
    (c,) = degradation.comparisons
    assert (c.first.net, c.second.net) == ("plain20", "plain56")
    assert (c.first.mean, c.second.mean, c.first.std, c.second.std) == (11.0, 15.0, 1.0, 1.0)
    half = T4 * math.sqrt(2 / 3)
    assert c.difference == 4.0 and (c.low, c.high) == pytest.approx((4 - half, 4 + half))  # [+1.733, +6.267]
    assert (c.seed_pairs_agreeing, c.seed_pairs) == (3, 3)
    cure = verdicts["cure-training"]
    assert cure.verdict == SUPPORTED and [x.difference for x in cure.comparisons] == [-5.0, -12.0]
    depth = verdicts["depth-helps"]
    assert depth.verdict == SUPPORTED
    assert depth.judged_at == "final errors after the paper's whole schedule (64,000 iterations)"
    (c,) = depth.comparisons
    assert c.difference == pytest.approx(-2.0)
    assert (c.low, c.high) == pytest.approx((-2 - T4 * 0.5 * math.sqrt(2 / 3), -2 + T4 * 0.5 * math.sqrt(2 / 3)))
    # degradation-along-depth holds the same single comparison (plain20 -> plain56): listed once.
    assert "degradation-along-depth" not in verdicts


def test_figure7_responses_judged_over_measured_nets() -> None:
    responses = _verdicts(CLAIMS / "holds")["residual-responses"]
    measured, unmeasured = responses.comparisons[1], responses.comparisons[0]
    assert (measured.first.net, measured.second.net) == ("plain56", "resnet56")
    assert (measured.first.values, measured.second.values) == ((3.0, 4.0, 5.0), (0.5, 1.5, 2.5))
    assert measured.verdict == SUPPORTED and measured.difference == -2.5
    assert (measured.low, measured.high) == pytest.approx((-2.5 - T4 * math.sqrt(2 / 3), -2.5 + T4 * math.sqrt(2 / 3)))
    assert measured.detail == "resnet56 smaller in 2 of 2 layers"  # initialisation rows are left out
    assert unmeasured.verdict == UNDECIDED and unmeasured.reason == "no layer responses of plain20 or resnet20"
    assert responses.verdict == UNDECIDED and responses.reason.startswith("1 of 2 comparisons support it")


def test_reversed_degradation_is_contradicted() -> None:
    verdicts = _verdicts(CLAIMS / "reversed")
    assert list(verdicts) == ["degradation"]  # the only claim plain-20 and plain-56 alone speak to
    v = verdicts["degradation"]
    assert v.verdict == CONTRADICTED and v.judged_at == "at 1,280 of 64,000 iterations"
    (c,) = v.comparisons
    half = T4 * math.sqrt(2 / 3)
    assert c.difference == -4.0 and (c.low, c.high) == pytest.approx((-4 - half, -4 + half))
    assert (c.seed_pairs_agreeing, c.seed_pairs) == (0, 3)


def test_single_seed_is_not_decided_and_says_why() -> None:
    verdicts = _verdicts(CLAIMS / "single_seed")
    assert {v.verdict for v in verdicts.values()} == {UNDECIDED}
    v = verdicts["degradation"]
    assert v.reason == "n=1 for plain20 and plain56: no test over seeds (saw Δ +34.00, in the claimed direction)"
    assert v.judged_at == "at 1,200 of 64,000 iterations"
    (c,) = v.comparisons
    assert c.difference == 34.0 and math.isnan(c.low) and math.isnan(c.high)
    assert verdicts["depth-helps"].reason == ("needs the paper's whole schedule: resnet20-A and resnet56-A reached "
                                              "1,200 of 64,000 iterations")


def test_truncated_run_is_not_comparable_with_the_paper(tmp_path: Path) -> None:
    results = load_results(CLAIMS / "truncated")
    table6 = tables.reproduction_table(results, 6)
    assert set(table6["verdict"]) == {"not comparable: 1,280 of 64,000 iterations"}
    assert table6["difference"].isna().all()
    row = table6.set_index("variant").loc["resnet20-A"]  # the numbers are still shown
    assert (row["n"], row["mean"], row["min"], row["max"], row["paper"]) == (2, 38.0, 37.0, 39.0, 8.75)
    markdown = (build_report(CLAIMS / "truncated", tmp_path / "report") / "report.md").read_text()
    for word in ("| above |", "| below |", "| within"):
        assert word not in markdown
    verdicts = _verdicts(CLAIMS / "truncated")
    # The course of training is judged where the runs are, and says so.
    v = verdicts["degradation"]
    assert v.verdict == SUPPORTED and v.judged_at == "at 1,280 of 64,000 iterations"
    (c,) = v.comparisons
    assert c.difference == 20.0 and (c.low, c.high) == pytest.approx((20 - T2 * math.sqrt(2), 20 + T2 * math.sqrt(2)))
    # A claim about final errors waits for the whole schedule.
    assert verdicts["depth-helps"].verdict == UNDECIDED
    assert "needs the paper's whole schedule" in verdicts["depth-helps"].reason


def test_missing_trials_never_decide() -> None:
    verdicts = _verdicts(CLAIMS / "missing_trial")
    v = verdicts["degradation"]
    assert v.verdict == UNDECIDED
    assert v.reason == ("n=1 for plain56: no test over seeds (saw Δ +19.00, in the claimed direction); "
                        "plain56: 1 failed, 1 pending left out")
    cure = verdicts["cure-training"]
    assert cure.verdict == UNDECIDED
    assert [c.verdict for c in cure.comparisons] == [SUPPORTED, UNDECIDED]
    assert cure.comparisons[1].reason == "no trial of resnet56-A has results yet (2 pending)"
    assert cure.comparisons[0].difference == -10.0
    assert verdicts["depth-helps"].reason == "no trial of resnet56-A has results yet (2 pending)"


@pytest.mark.parametrize("fixture", ["holds", "reversed", "single_seed", "truncated", "missing_trial"])
def test_results_that_cannot_decide_never_decide(fixture: str) -> None:
    """supported needs every comparison tested (n >= 2 on both sides) and on the claimed side;
    contradicted needs one tested comparison on the other side."""
    for v in evaluate_claims(load_results(CLAIMS / fixture), load_claims()):
        tested = [c for c in v.comparisons if c.first.n >= 2 and c.second.n >= 2]
        if v.verdict == SUPPORTED:
            assert len(tested) == len(v.comparisons)
            assert all(v.claim.sign * c.low > 0 for c in v.comparisons)
        if v.verdict == CONTRADICTED:
            assert any(v.claim.sign * c.high < 0 for c in tested)
        for c in v.comparisons:
            if c.first.n < 2 or c.second.n < 2:
                assert c.verdict == UNDECIDED


def test_welch_interval_with_unequal_spreads() -> None:
    first, second = Side("a", (1.0, 2.0, 3.0), (0, 1, 2)), Side("b", (4.0, 6.0, 8.0, 10.0), (0, 1, 2, 3))
    v1, v2 = 1.0 / 3, (20 / 3) / 4  # variance of each mean
    df = (v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 3)  # Welch-Satterthwaite, about 4.08
    half = 2.756284874359572 * math.sqrt(v1 + v2)  # t quantile at that df (scipy 1.17.1's stdtrit); about 3.91
    c = compare(first, second, sign=1)
    assert c.difference == 5.0 and (c.low, c.high) == pytest.approx((5 - half, 5 + half))
    assert c.verdict == SUPPORTED and (c.seed_pairs_agreeing, c.seed_pairs) == (3, 3)
    # The same spreads around a difference of 3: the interval holds 0.
    c = compare(first, Side("b", (2.0, 4.0, 6.0, 8.0), (0, 1, 2, 3)), sign=1)
    assert c.verdict == UNDECIDED and c.reason == f"95% interval [{3 - half:+.2f}, {3 + half:+.2f}] contains 0"
    flat = compare(Side("a", (5.0, 5.0), (0, 1)), Side("b", (5.0, 5.0), (0, 1)), sign=1)
    assert (flat.low, flat.high, flat.verdict) == (0.0, 0.0, UNDECIDED)  # no spread, no difference


def test_welch_interval_matches_a_worked_example() -> None:
    # Welch's two-sample interval computed by hand (Welch-Satterthwaite df = 2.036, t(0.975, df) =
    # 4.2556): plain-56 against plain-20 training errors of three seeds each.
    first, second = Side("plain20", (17.9, 18.3, 17.7), (0, 1, 2)), Side("plain56", (55.1, 57.2, 50.9), (0, 1, 2))
    c = compare(first, second, sign=1)
    assert (c.low, c.high) == pytest.approx((28.5638, 44.3029), abs=1e-4)
    assert c.verdict == SUPPORTED


def test_scorecard_atop_the_markdown_report(tmp_path: Path) -> None:
    markdown = (build_report(CLAIMS / "holds", tmp_path / "report") / "report.md").read_text()
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Scorecard: the paper's claims on these results"
    assert ("| a deeper plain net has higher training error than a shallower one | Fig. 1, Fig. 6 (left) | supported "
            "| the comparison supports it | at the end of the paper's schedule (64,000 iterations) | plain20 → plain56: "
            "11.00 → 15.00 (n=3/3), Δ +4.00, 95% CI [+1.73, +6.27], 3/3 seed pairs agree |") in markdown
    assert "| degradation | train_error | plain20 | 11.00 ± 1.00 (n=3, 10.00–12.00) | plain56 |" in markdown
    assert "Provenance: all 12 trials that ran share one code version (0123abc)" in markdown


def test_scorecard_printed_at_the_end_of_run_names_the_claims(capsys) -> None:
    from benchmark.report.scorecard import print_scorecard

    print_scorecard(CLAIMS / "reversed")
    out = capsys.readouterr().out
    assert "at 1,280 of 64,000 iterations: contradicted" in out
    assert "plain20 → plain56: 15.00 → 11.00 (n=3/3), Δ -4.00, 95% CI [-6.27, -1.73], 0/3 seed pairs agree" in out


def test_mixed_provenance_is_flagged(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(CLAIMS / "holds", folder)
    lines = (folder / "runs.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",cpu: fixture,0123abc,", ",cuda: NVIDIA H100,4567def-dirty,")
    (folder / "runs.csv").write_text("\n".join(lines) + "\n")
    results = load_results(folder)
    warnings = mixed_provenance(results)
    assert warnings[0] == "trials ran on 2 code versions: 0123abc (11 trials), 4567def-dirty (1 trial)"
    assert "1 of 12 trials ran with uncommitted changes ('-dirty'): their exact code is not recorded" in warnings
    assert "trials ran on 2 devices: cpu: fixture (11 trials), cuda: NVIDIA H100 (1 trial)" in warnings
    assert provenance_summary(results).startswith("Provenance differs: trials ran on 2 code versions")
    assert "Provenance differs" in scorecard_text(results, evaluate_claims(results, load_claims()))


def test_code_versions_with_recorded_changes(tmp_path: Path) -> None:
    """A newer writer records code_version as 'commit+hash of the uncommitted changes': it wins over git_commit."""
    folder = tmp_path / "versions"
    shutil.copytree(CLAIMS / "reversed", folder)
    lines = (folder / "runs.csv").read_text().splitlines()
    header = lines[0].split(",") + ["code_version"]
    commit = "1e2ab45a545c2a8c94c763b06bb287d9b568ba9b"
    rows = [line + "," + (f"{commit}+a1b2c3d4e5f6" if i == 1 else commit) for i, line in enumerate(lines[1:], start=1)]
    (folder / "runs.csv").write_text("\n".join([",".join(header), *rows]) + "\n")
    results = load_results(folder)
    warnings = mixed_provenance(results)
    assert warnings == ["trials ran on 2 code versions: 1e2ab45a545c (5 trials), 1e2ab45a545c+a1b2c3d4e5f6 (1 trial)",
                        "1 of 6 trials ran with uncommitted changes ('commit+hash of the changes')"]


def test_committed_cpu_run_says_what_it_shows() -> None:
    """results/devbox-2cpu/degradation_cpu: one seed, 1,200 of 64,000 iterations, two code versions."""
    results = load_results(ROOT / "results" / "devbox-2cpu" / "degradation_cpu")
    verdicts = {v.claim.id: v for v in evaluate_claims(results, load_claims())}
    assert {v.verdict for v in verdicts.values()} == {UNDECIDED}
    degradation = verdicts["degradation"]
    assert degradation.judged_at == "at 1,200 of 64,000 iterations"
    assert degradation.comparisons[0].difference == pytest.approx(69.6328125 - 36.390625)  # plain56 - plain20
    assert [c.difference for c in verdicts["cure-training"].comparisons] == pytest.approx(
        [31.0546875 - 36.390625, 43.9453125 - 69.6328125])
    assert all(c.difference < 0 for c in verdicts["residual-responses"].comparisons)
    assert "trials ran on 2 code versions" in provenance_summary(results)


def test_jpeg_cost_is_measured_where_the_results_hold_both_sources(tmp_path: Path) -> None:
    folder = tmp_path / "sources"
    shutil.copytree(CLAIMS / "holds", folder)
    runs = (folder / "runs.csv").read_text().splitlines()
    metrics = (folder / "metrics.csv").read_text().splitlines()
    # ResNet-20 again on the original data, one point better on every seed.
    for line in [line for line in runs if line.startswith("resnet20-A-s")]:
        runs.append(line.replace("resnet20-A-s", "resnet20-A-orig-s", 1).replace(",jpeg75,", ",torchvision,")
                    .replace(",8.5,", ",7.5,").replace(",9.0,", ",8.0,").replace(",9.5,", ",8.5,"))
    metrics += [line.replace("resnet20-A-s", "resnet20-A-orig-s", 1) for line in metrics if line.startswith("resnet20-A-s")]
    (folder / "runs.csv").write_text("\n".join(runs) + "\n")
    (folder / "metrics.csv").write_text("\n".join(metrics) + "\n")
    results = load_results(folder)
    table6 = tables.reproduction_table(results, 6)
    jpeg = table6[(table6["variant"] == "resnet20-A") & (table6["data_source"] == "jpeg75")].iloc[0]
    assert "JPEG copy: measured +1.00 points against the original data (n=3 and 3 at 64,000 iterations)" in jpeg["note"]
    resnet56 = table6[table6["variant"] == "resnet56-A"].iloc[0]
    assert "JPEG copy: its cost against the original data is unmeasured" in resnet56["note"]
    # The claims judge each data source apart, and label the lines.
    data = {(v.claim.id, v.data) for v in evaluate_claims(results, load_claims())}
    assert ("degradation", "jpeg75") in data and ("depth-helps", "jpeg75") in data


def test_preactivation_trials_are_compared_with_identity_mappings(tmp_path: Path) -> None:
    folder = tmp_path / "preact"
    shutil.copytree(CLAIMS / "holds", folder)
    runs = (folder / "runs.csv").read_text().splitlines()
    metrics = (folder / "metrics.csv").read_text().splitlines()
    for source, model, depth in (("resnet56-A-s0", "resnet110", "110"), ("resnet20-A-s0", "resnet20", "20")):
        new = f"{model}-A-preact-s0"
        row = next(line for line in runs if line.startswith(source + ","))
        cells = row.split(",")
        cells[0], cells[2], cells[5], cells[7] = new, model, depth, "True"
        runs.append(",".join(cells))
        metrics += [line.replace(source, new, 1) for line in metrics if line.startswith(source + ",")]
    (folder / "runs.csv").write_text("\n".join(runs) + "\n")
    (folder / "metrics.csv").write_text("\n".join(metrics) + "\n")
    table6 = tables.reproduction_table(load_results(folder), 6).set_index("variant")
    row = table6.loc["resnet110-A-preact"]
    assert (row["paper"], row["reference"]) == (6.37, "He et al. 2016, Table 3")  # not the paper's 6.61
    assert row["difference"] == pytest.approx(6.5 - 6.37) and row["verdict"] == "within ±1.0"
    row = table6.loc["resnet20-A-preact"]
    assert math.isnan(row["paper"]) and "pre-activation: no published number held" in row["note"]


def test_imagenet_rows_state_their_own_test_protocol() -> None:
    results = load_results(FIXTURES / "imagenet_mini")
    table2 = tables.reproduction_table(results, 2).set_index("variant")
    assert table2.loc["plain18", "protocol"] == "10-crop" and table2.loc["plain18", "note"] == ""
    assert table2.loc["plain34", "protocol"] == "centre crop"
    assert "tested on one centre crop; the paper's Table 2 is 10-crop" in table2.loc["plain34", "note"]


@pytest.mark.parametrize(("text", "needle"), [
    ("chains: [[plain20, resnet57-A]]", "unknown model 'resnet57' (in 'resnet57-A')"),
    ("metric: val_loss", "unknown metric 'val_loss'; expected one of train_error, test_error"),
    ("direction: upward", "unknown direction 'upward'; expected one of increasing, decreasing"),
    ("judged: sometimes", "unknown judged 'sometimes'"),
    ("chains: [[plain20, resnet20]]", "residual net 'resnet20' needs its shortcut option, e.g. resnet20-A"),
    ("chains: [[plain20, resnet34-A]]", "model 'resnet34' is a imagenet net, the claim is about cifar10"),
    ("colour: red", "unknown key 'colour'"),
])
def test_bad_claims_file_is_one_line_naming_it(tmp_path: Path, capsys, text: str, needle: str) -> None:
    good = {"id": "mine", "statement": "s", "cites": "Fig. 6", "dataset": "cifar10", "metric": "train_error",
            "direction": "increasing", "judged": "course", "chains": "[[plain20, plain56]]", "support": "s"}
    key = text.split(":")[0]
    fields = {**good, key: text.split(": ", 1)[1]}
    path = tmp_path / "claims.yaml"
    path.write_text("claims:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in fields.items()) + "\n")
    with pytest.raises(ClaimsError) as caught:
        load_claims(path)
    message = str(caught.value)
    assert needle in message and "\n" not in message
    assert f"claims file {path}: claim 'mine'" in message
    out = tmp_path / "out"
    assert main(["report", str(CLAIMS / "reversed"), "--out", str(out), "--claims", str(path)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()  # nothing written
