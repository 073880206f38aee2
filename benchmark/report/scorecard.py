"""The scorecard: one line per claim of the paper that a suite's trials can speak to, atop every
report and at the end of ``python -m benchmark run``; and the claims in detail, one row per comparison.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.analysis.claims import Claim, load_claims
from benchmark.analysis.verdicts import UNDECIDED, ClaimVerdict, Comparison, evaluate_claims
from benchmark.report.formats import interval, seed_stats, signed
from benchmark.report.render import Block, Heading, Paragraph, Table
from benchmark.results.provenance import provenance_summary
from benchmark.results.read import Results, load_results

TEST = ("Each comparison is the difference of the seeds' mean (second net minus first; error points, or response "
        "std for Fig. 7) with Welch's t 95% interval: supported when the interval lies on the claimed side of 0, "
        "contradicted when on the other, not decided when it contains 0 or a net has fewer than 2 seeds. Seed "
        "pairs: how many same-seed pairs show the claimed sign. A claim is contradicted if any comparison is, "
        "supported if all are. Claims about the course of training are judged at the iteration every compared "
        "trial reached; claims about final errors only after the paper's whole schedule.")


def _css(verdict: str) -> str:
    return verdict.replace(" ", "-")


def _evidence(comparison: Comparison) -> str:
    """'plain20 → plain56: 3.00 → 7.00 (n=3/3), Δ +4.00, 95% CI [+1.73, +6.27], 3/3 seed pairs agree'."""
    first, second = comparison.first, comparison.second
    if not first.n or not second.n:
        return f"{first.net} → {second.net}: no numbers to compare"
    text = (f"{first.net} → {second.net}: {first.mean:.2f} → {second.mean:.2f} (n={first.n}/{second.n}), "
            f"Δ {signed(comparison.difference)}")
    if comparison.low == comparison.low:  # not NaN: a test was possible
        text += f", 95% CI {interval(comparison.low, comparison.high)}"
    if comparison.seed_pairs:
        text += f", {comparison.seed_pairs_agreeing}/{comparison.seed_pairs} seed pairs agree"
    if comparison.detail:
        text += f"; {comparison.detail}"
    return text


def _statement(verdict: ClaimVerdict) -> str:
    return verdict.claim.statement + (f" [{verdict.data}]" if verdict.data else "")


HEADING = "Scorecard: the paper's claims on these results"


def no_trials_blocks(what: str) -> list[Block]:
    """The scorecard of a folder without trials (results/throughput/): it says why it is empty."""
    return [Heading(HEADING), Paragraph(f"No claim of the paper concerns {what}; each training suite's report "
                                        "judges the claims its trials can speak to.")]


def scorecard_blocks(results: Results, verdicts: list[ClaimVerdict]) -> list[Block]:
    """The scorecard: a heading, the table (HTML id 'scorecard'), the test and the provenance."""
    blocks: list[Block] = [Heading(HEADING)]
    if not verdicts:
        blocks.append(Paragraph("No claim of the paper concerns the nets these results hold."))
    else:
        rows = tuple((_statement(v), v.claim.cites, v.verdict, v.reason, v.judged_at,
                      "; ".join(_evidence(c) for c in v.comparisons)) for v in verdicts)
        blocks.append(Table(("claim", "paper", "verdict", "why", "judged", "numbers"), rows, html_id="scorecard",
                            row_classes=tuple(_css(v.verdict) for v in verdicts)))
        blocks.append(Paragraph("Test: " + TEST))
    blocks.append(Paragraph(provenance_summary(results)))
    return blocks


def details_blocks(verdicts: list[ClaimVerdict]) -> list[Block]:
    """Every comparison behind the scorecard, with each net's statistics over seeds."""
    if not verdicts:
        return []
    rows = []
    for verdict in verdicts:
        schedule_note = verdict.judged_at
        for c in verdict.comparisons:
            at = "" if c.at_step != c.at_step else f"{c.at_step:,.0f}"
            rows.append((verdict.claim.id + (f" [{verdict.data}]" if verdict.data else ""), verdict.claim.metric,
                         c.first.net, seed_stats(c.first.n, c.first.mean, c.first.std, c.first.low, c.first.high),
                         c.second.net,
                         seed_stats(c.second.n, c.second.mean, c.second.std, c.second.low, c.second.high),
                         signed(c.difference),
                         interval(c.low, c.high) if c.low == c.low else "—",
                         f"{c.seed_pairs_agreeing}/{c.seed_pairs}" if c.seed_pairs else "—",
                         at or schedule_note, c.verdict, c.reason + (f"; {c.detail}" if c.detail else "")))
    header = ("claim", "metric", "first net", "mean ± std (n, min–max)", "second net", "mean ± std (n, min–max)",
              "effect Δ", "95% CI", "seed pairs agreeing", "at iteration", "verdict", "why")
    return [Heading("The claims in detail"),
            Paragraph("One row per comparison: each net's statistics over seeds at the iteration judged, the effect "
                      "(second minus first) and its 95% interval. " + TEST),
            Table(header, tuple(rows))]


def scorecard_text(results: Results, verdicts: list[ClaimVerdict]) -> str:
    """The scorecard as plain lines for a console."""
    lines = [f"Scorecard ({results.path}): the paper's claims"]
    if not verdicts:
        lines.append("  no claim of the paper concerns the nets these results hold")
    for v in verdicts:
        verdict = v.verdict if v.verdict != UNDECIDED else f"{v.verdict}: {v.reason}"
        if v.verdict != UNDECIDED:
            verdict += f" ({v.reason})"
        lines.append(f"  {_statement(v)} ({v.claim.cites}), {v.judged_at}: {verdict}")
        lines += [f"      {_evidence(c)}" for c in v.comparisons]
    lines.append("  " + provenance_summary(results))
    return "\n".join(lines)


def print_scorecard(results_dir: str | Path, claims: tuple[Claim, ...] | None = None) -> None:
    """Print the scorecard of a results folder (the end of ``python -m benchmark run``)."""
    results = load_results(results_dir)
    print(scorecard_text(results, evaluate_claims(results, claims if claims is not None else load_claims())))

