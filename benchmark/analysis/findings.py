"""Figure 6's three findings as this project has measured them, for the planner's verdicts (issue 13).

Which pairs of a suite's models bear on each finding (degradation: a deeper plain net against a
shallower one; the cure: ResNet against plain at the same depth; a deeper ResNet against a shallower
one), what finished runs showed for them after how many iterations (`OBSERVATIONS`, read from
committed results folders by `observe`), and what a plan of some length can therefore expect
(`finding_lines`, printed by `run --budget`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Observation:
    """One measured comparison of Figure 6 after `iterations`: `better` against `baseline` (the
    shallower plain net against the deeper one, ResNet against plain, the deeper ResNet against the
    shallower); `shown` when the final training error and the final test error both came out the
    paper's way round (gaps in points, positive: the paper's way)."""

    finding: str
    baseline: str
    better: str
    iterations: int
    shown: bool
    train_gap: float
    test_gap: float
    setting: str    # recipe, precision and whether its drops were reached
    source: str     # the results folder it was read from


FINDINGS = {
    "degradation": "a deeper plain net trains worse than a shallower one (Figures 1 and 6, left)",
    "cure": "at the same depth, identity shortcuts train better than the plain net (Figure 6, middle)",
    "deeper": "a deeper ResNet ends below a shallower one (Figure 6, middle; Table 6)",
}

# Measured on the 2-core development machine (JPEG CIFAR-10, one seed, test error on a fixed
# 2,000-image subset), read with `observe` from the committed results folders named in `source`.
_FIRST_RUN = ("cifar10_he2015, fp32, no drop reached", "results/devbox-2cpu/degradation_cpu")
OBSERVATIONS: tuple[Observation, ...] = (
    Observation("degradation", "plain56", "plain20", 1200, True, 33.2, 19.9, *_FIRST_RUN),
    Observation("cure", "plain20", "resnet20", 1200, True, 5.3, 9.0, *_FIRST_RUN),
    Observation("cure", "plain56", "resnet56", 1200, True, 25.7, 17.7, *_FIRST_RUN),
    Observation("deeper", "resnet20", "resnet56", 1200, False, -12.9, -11.2, *_FIRST_RUN),
)


def observe(results_dir: Path) -> list[Observation]:
    """The Observations a finished run makes (how OBSERVATIONS are written): for each pair of its
    completed trials that bears on a finding (one seed: the lowest), the gaps in final training
    error (the mean over the last evaluation interval) and final test error."""
    with (Path(results_dir) / "runs.csv").open(newline="") as handle:
        runs = sorted((row for row in csv.DictReader(handle) if row["status"] == "completed"), key=lambda r: int(r["seed"]))
    final: dict[str, tuple[float, float]] = {}
    for row in runs:
        final.setdefault(row["model"], (float(row["final_train_error"]), float(row["final_eval_error"])))
    if not runs:
        return []
    first = runs[0]
    steps = int(float(first["recipe_max_steps"]))
    drops = [int(m) for m in first["recipe_lr_milestones"].split()]
    reached = [f"{m:,}" for m in drops if m < steps]
    setting = f"{first['recipe']}, {first['precision']}, " + (f"drops at {' and '.join(reached)}" if reached else "no drop reached")
    observed = []
    for finding, candidates in pairs(list(final)).items():
        for baseline, better in candidates:
            (train_b, test_b), (train_g, test_g) = final[baseline], final[better]
            observed.append(Observation(finding, baseline, better, steps, train_b > train_g and test_b > test_g,
                                        round(train_b - train_g, 1), round(test_b - test_g, 1), setting, str(results_dir)))
    return observed


def pairs(models: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """The (baseline, better) pairs of `models` that bear on each finding."""
    from benchmark.models import model_info

    infos = {m: model_info(m) for m in models}
    plain = sorted((m for m in models if infos[m].kind == "plain"), key=lambda m: infos[m].depth)
    residual = sorted((m for m in models if infos[m].kind == "residual"), key=lambda m: infos[m].depth)
    return {
        "degradation": [(deep, shallow) for i, shallow in enumerate(plain) for deep in plain[i + 1:]],
        "cure": [(p, r) for p in plain for r in residual if infos[p].depth == infos[r].depth],
        "deeper": [(shallow, deep) for i, shallow in enumerate(residual) for deep in residual[i + 1:]],
    }


def finding_lines(models: Sequence[str], iterations: int, cost_of: Callable[[int], str],
                  observations: Sequence[Observation] = OBSERVATIONS) -> list[str]:
    """For each Figure 6 finding: whether `iterations` can show it with these models, from
    `observations`, and what a finding that needs more iterations would take (`cost_of(n)`: the
    time and budget n iterations take on this machine, from the planner)."""
    lines = []
    for finding, claim in FINDINGS.items():
        candidates = pairs(models)[finding]
        if not candidates:
            lines.append(f"{finding}: not in this suite ({claim})")
            continue
        verdicts = [_pair_verdict(finding, pair, iterations, cost_of, observations) for pair in candidates]
        shown = [text for state, text in verdicts if state == "shown"]
        later = [text for state, text in verdicts if state == "later"]
        if shown or later:
            lines.append(f"{finding}: " + "; ".join(shown or later))
        else:
            unmeasured = {f"{b} below {a}" for a, b in candidates}
            known = [text for _, text in verdicts if text not in unmeasured]
            rest = [text for _, text in verdicts if text in unmeasured]
            lines.append(f"{finding}: " + "; ".join(known + ([f"not measured yet: {', '.join(rest)}"] if rest else [])))
    return lines


def _pair_verdict(finding: str, pair: tuple[str, str], iterations: int, cost_of: Callable[[int], str],
                  observations: Sequence[Observation]) -> tuple[str, str]:
    """("shown" | "later" | "unknown", text) for one pair of models."""
    baseline, better = pair
    seen = sorted((o for o in observations if (o.finding, o.baseline, o.better) == (finding, baseline, better)),
                  key=lambda o: o.iterations)
    label = f"{better} below {baseline}"
    shown_within = [o for o in seen if o.shown and o.iterations <= iterations]
    failed_after = [o for o in seen if not o.shown and shown_within and shown_within[-1].iterations <= o.iterations <= iterations]
    if shown_within and not failed_after:
        o = shown_within[-1]
        return "shown", (f"{label}: expected (seen at {o.iterations:,} iterations, {o.setting}: {o.train_gap:+.1f} points "
                         f"of training error, {o.test_gap:+.1f} of test error)")
    later = [o for o in seen if o.shown and o.iterations > iterations]
    missed = [o for o in seen if not o.shown and o.iterations <= iterations]
    not_at = f", not at {missed[-1].iterations:,}" if missed else ""
    if later:
        need = later[0].iterations
        return "later", f"{label}: needs more iterations (seen at {need:,}{not_at}; that is {cost_of(need)})"
    if seen:
        o = seen[-1]
        return "unknown", (f"{label}: not seen up to {o.iterations:,} iterations ({o.setting}: {o.train_gap:+.1f} "
                           f"points of training error, {o.test_gap:+.1f} of test error); longer runs unmeasured")
    return "unknown", label


