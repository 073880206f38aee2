"""Which nets, how many seeds and how long: the plan that decides the most of the paper's claims
within a budget (issue 21; `benchmark/fleet/planner.py` measures the costs and prints the plan).

A claim is promised only where committed runs decided it: for each comparison (a claim's pair of
nets), `findings.decidable_from` gives the iteration from which runs with k seeds per net were
decided at every evaluation, with the scorecard's own test. With 2 seeds Welch's interval has about
one degree of freedom, so it is rarely promised; 3 seeds are tried first.

`choose` adds comparisons cheapest first: each step takes the comparison whose nets and length add
the least expected time to the plan so far. On the committed evidence that is degradation
(plain-20 against plain-56), then the cure at 56 layers, then at 20 layers. It keeps the longest
run of steps that fits, for 3 seeds, else 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmark.analysis.claims import METRICS, Claim
from benchmark.analysis.findings import SEEDS, Evidence, decidable_from, sources_of

# seconds(nets, seeds, iterations): the expected wall time of a suite of those trials here
Seconds = Callable[[tuple[str, ...], int, int], float]


@dataclass(frozen=True)
class Pair:
    """One comparison of a claim: `first` against `second` (the report's net labels)."""

    claim: str
    first: str
    second: str

    @property
    def nets(self) -> tuple[str, str]:
        return self.first, self.second

    def label(self) -> str:
        return f"{self.claim} ({self.first} → {self.second})"


@dataclass(frozen=True)
class VerdictPlan:
    """The comparisons a plan expects to decide, with `seeds` seeds of each of `nets`, once every
    trial has trained `needs` iterations."""

    seeds: int
    nets: tuple[str, ...]
    pairs: tuple[Pair, ...]
    needs: int


def claim_pairs(claims: Sequence[Claim], nets: set[str]) -> list[Pair]:
    """The comparisons of the `course` claims on error metrics that `nets` allow, in the claims'
    order; a comparison repeated by a later claim (degradation along depth, with only plain-20 and
    plain-56) is kept once."""
    pairs, seen = [], set()
    for claim in claims:
        if claim.judged != "course" or METRICS.get(claim.metric) is None:
            continue
        for first, second in claim.pairs(nets):
            if (claim.metric, first, second) not in seen:
                seen.add((claim.metric, first, second))
                pairs.append(Pair(claim.id, first, second))
    return pairs


def needed(pair: Pair, seeds: int, evidence: Sequence[Evidence], eval_every: int) -> float:
    """The iterations `pair` needs with `seeds` seeds, rounded up to an evaluation (inf: never seen decided)."""
    threshold = decidable_from(pair.claim, pair.first, pair.second, seeds, evidence)
    return threshold if math.isinf(threshold) else math.ceil(threshold / eval_every) * eval_every


def cheapest_first(pairs: Sequence[Pair], seeds: int, evidence: Sequence[Evidence], eval_every: int,
                   seconds: Seconds) -> list[VerdictPlan]:
    """The growing plans, one per step: each adds the decidable comparison that costs least on top of
    the previous plan (its nets' trials at the longer of the two lengths)."""
    remaining = [p for p in pairs if not math.isinf(needed(p, seeds, evidence, eval_every))]
    steps: list[VerdictPlan] = []
    nets: tuple[str, ...] = ()
    chosen: tuple[Pair, ...] = ()
    length = 0
    while remaining:
        def cost(pair: Pair) -> float:
            grown = tuple(dict.fromkeys(nets + pair.nets))
            return seconds(grown, seeds, max(length, int(needed(pair, seeds, evidence, eval_every))))

        best = min(remaining, key=cost)
        remaining.remove(best)
        nets = tuple(dict.fromkeys(nets + best.nets))
        chosen += (best,)
        length = max(length, int(needed(best, seeds, evidence, eval_every)))
        steps.append(VerdictPlan(seeds, nets, chosen, length))
    return steps


def choose(pairs: Sequence[Pair], evidence: Sequence[Evidence], eval_every: int, seconds: Seconds,
           target_s: float) -> VerdictPlan | None:
    """The plan that decides the most comparisons within `target_s` seconds, with more seeds on a
    tie; None when not even the cheapest comparison fits."""
    best: VerdictPlan | None = None
    for seeds in sorted(SEEDS, reverse=True):
        fitting = [step for step in cheapest_first(pairs, seeds, evidence, eval_every, seconds)
                   if seconds(step.nets, step.seeds, step.needs) <= target_s]
        if fitting and (best is None or len(fitting[-1].pairs) > len(best.pairs)):
            best = fitting[-1]
    return best


def smallest_plan(pairs: Sequence[Pair], evidence: Sequence[Evidence], eval_every: int, seconds: Seconds,
                  containing: Pair | None = None) -> tuple[float, VerdictPlan] | None:
    """The least time (seconds) for which `choose` plans to decide `containing` (else anything),
    and that plan; None when no time would. `choose` changes its answer only where a growing plan's
    expected time is reached, so those times are the only ones to try."""
    times = sorted({seconds(step.nets, step.seeds, step.needs) for seeds in SEEDS
                    for step in cheapest_first(pairs, seeds, evidence, eval_every, seconds)})
    for time_s in times:
        plan = choose(pairs, evidence, eval_every, seconds, time_s)
        if plan is not None and (containing is None or containing in plan.pairs):
            return time_s, plan
    return None


def pair_lines(pairs: Sequence[Pair], plan: VerdictPlan | None, evidence: Sequence[Evidence], eval_every: int,
               seconds: Seconds, budget_for: Callable[[float], str]) -> list[str]:
    """For each comparison: expected to be decided (at what length, with how many seeds, seen where),
    or what it would take."""
    lines = []
    for pair in pairs:
        if plan is not None and pair in plan.pairs:
            at = int(needed(pair, plan.seeds, evidence, eval_every))
            lines.append(f"{pair.label()}: expected to be decided at {at:,} iterations with {plan.seeds} seeds "
                         f"(committed runs with {plan.seeds} seeds, decided at every evaluation: "
                         f"{sources_of(pair.claim, pair.first, pair.second, plan.seeds, evidence)})")
            continue
        smallest = smallest_plan(pairs, evidence, eval_every, seconds, containing=pair)
        if smallest is None:
            seen = sources_of(pair.claim, pair.first, pair.second, 3, evidence)
            lines.append(f"{pair.label()}: " + (f"not decided with 3 seeds in any committed run yet ({seen})" if seen
                                                 else "not measured with seeds in any committed run yet"))
        else:
            time_s, step = smallest
            lines.append(f"{pair.label()}: not in this budget: needs {budget_for(time_s)} "
                         f"({', '.join(step.nets)} with {step.seeds} seeds, {step.needs:,} iterations)")
    return lines
