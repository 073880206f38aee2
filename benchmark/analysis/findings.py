"""When each of the paper's claims becomes decidable, as committed multi-seed runs show it (issue 21).

The planner (`benchmark/fleet/planner.py`) promises a claim only at a length and a number of seeds
at which runs of this project decided it with the scorecard's own test (`verdicts.compare`: Welch's
95% interval over seeds, on the claimed side of zero). `measure_evidence` reads a committed results
folder with several seeds per net and, for each comparison of a `course` claim (degradation, the
cure on training and on test error) and for k seeds per net, finds the first evaluated iteration
from which every later evaluation of that run is *supported* for every choice of k of its seeds
(the worst case: a user's k seeds may be any k). `EVIDENCE` holds the rows of the folders in
`SOURCES`, written to `reference/decidability.csv` by `write_evidence` and checked against the
folders by the tests; `decidable_from` combines them.

What this evidence is: the course of runs of a fixed length (each folder's `recipe_max_steps`, its
learning-rate drops at 50% and 75% of that length), read at every evaluation. A run planned for
length L is judged at L, after its own drops, so the course of a longer run at L is a stand-in for
it; both folders agree on the thresholds where they overlap (docs/suites.md, the planner).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from itertools import combinations
from pathlib import Path

from benchmark.analysis.claims import METRICS, Claim
from benchmark.analysis.verdicts import SUPPORTED, Side, compare

# The committed folders with three seeds per net that the planner's thresholds come from: Figure 6
# on a CPU (2,000 iterations) and on a GPU (6,000), and the planner's own `make run` folders.
SOURCES = ("results/devbox-2cpu/figure6_cpu", "results/h200-1gpu/figure6_gpu",
           "results/devbox-2cpu/make-run-30m/degradation_cpu", "results/devbox-2cpu/make-run-1h/degradation_cpu")
SEEDS = (2, 3)  # a plan uses at least 2 seeds per net (with 1 nothing is decided) and 3 where it fits
EVIDENCE_FILE = "decidability.csv"


@dataclass(frozen=True)
class Evidence:
    """One comparison of a claim in one committed run, tested with `seeds` seeds per net."""

    claim: str               # claims.yaml id
    first: str               # the nets compared, as the report names them (plain56, resnet56-A)
    second: str
    seeds: int               # k seeds per net; the worst of every choice of k of the run's seeds
    decided_from: int        # first evaluated iteration from which every later one is supported; 0: never
    up_to: int               # the run's last evaluated iteration
    source: str              # the results folder


def measure_evidence(results_dir: str | Path, claims: Sequence[Claim], seeds: Sequence[int] = SEEDS,
                     label: str | None = None) -> list[Evidence]:
    """The Evidence rows of one results folder (its completed trials), for every `course` claim
    on an error metric whose nets it holds."""
    from benchmark.results.read import load_results

    results = load_results(results_dir)
    runs = results.runs[results.runs["status"] == "completed"]
    by_trial = {trial: rows.set_index("step") for trial, rows in results.metrics.groupby("trial_id")}
    rows = []
    for claim in claims:
        if claim.judged != "course" or METRICS.get(claim.metric) is None:
            continue
        column = METRICS[claim.metric][0]
        for first, second in claim.pairs(set(runs["variant"])):
            nets = [runs[runs["variant"] == net].set_index("seed")["trial_id"] for net in (first, second)]
            common = sorted(set(nets[0].index) & set(nets[1].index))
            steps = sorted(set.intersection(*(set(by_trial[t].index) for net in nets for t in net[common])))
            for k in seeds:
                if len(common) < k:
                    continue
                supported = [all(_supported(claim, first, second, nets, by_trial, column, step, chosen)
                                 for chosen in combinations(common, k)) for step in steps]
                rows.append(Evidence(claim.id, first, second, k, _decided_from(steps, supported), int(steps[-1]),
                                     label or str(results_dir)))
    return rows


def _supported(claim: Claim, first: str, second: str, nets: list, by_trial: dict, column: str, step: float,
               chosen: tuple[int, ...]) -> bool:
    sides = [Side(net, tuple(float(by_trial[ids[s]].at[step, column]) for s in chosen), chosen)
             for net, ids in zip((first, second), nets)]
    return compare(sides[0], sides[1], claim.sign).verdict == SUPPORTED


def _decided_from(steps: Sequence[float], supported: Sequence[bool]) -> int:
    """The first step of the final run of supported evaluations (0 when the last one is not)."""
    first = 0
    for step, ok in zip(steps, supported):
        first = (first or int(step)) if ok else 0
    return first


def write_evidence(repo: Path, claims: Sequence[Claim], sources: Iterable[str] = SOURCES,
                   out: Path | None = None) -> Path:
    """Measure every source folder (paths relative to `repo`) and write the table the planner reads."""
    target = out or Path(str(resources.files("benchmark.analysis.reference") / EVIDENCE_FILE))
    rows = [row for source in sources for row in measure_evidence(repo / source, claims, label=source)]
    partial = target.with_name(target.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(Evidence)], lineterminator="\n")
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    partial.replace(target)
    return target


def load_evidence() -> list[Evidence]:
    """The committed evidence (`reference/decidability.csv`)."""
    text = (resources.files("benchmark.analysis.reference") / EVIDENCE_FILE).read_text()
    return [Evidence(row["claim"], row["first"], row["second"], int(row["seeds"]), int(row["decided_from"]),
                     int(row["up_to"]), row["source"]) for row in csv.DictReader(text.splitlines())]


def decidable_from(claim: str, first: str, second: str, seeds: int, evidence: Sequence[Evidence]) -> float:
    """The iteration from which the comparison is decided with `seeds` seeds in every committed run
    that reached it: the largest of the runs' thresholds, where a run that never decided it pushes
    the threshold past its last iteration. `math.inf` when no run decided it, or none measured it."""
    rows = [e for e in evidence if (e.claim, e.first, e.second, e.seeds) == (claim, first, second, seeds)]
    if not any(e.decided_from for e in rows):
        return math.inf
    threshold = 0
    for row in sorted(rows, key=lambda e: e.up_to):
        threshold = max(threshold, row.decided_from) if row.decided_from else max(threshold, row.up_to + 1)
    longest = max(e.up_to for e in rows)
    return threshold if threshold <= longest else math.inf


def sources_of(claim: str, first: str, second: str, seeds: int, evidence: Sequence[Evidence]) -> str:
    """Where a threshold comes from, as the plan prints it."""
    rows = [e for e in evidence if (e.claim, e.first, e.second, e.seeds) == (claim, first, second, seeds)]
    return "; ".join(f"{e.source}: " + (f"from {e.decided_from:,} to {e.up_to:,}" if e.decided_from
                                         else f"not by {e.up_to:,}") for e in rows)
