"""Verdicts on the paper's claims, computed from a results folder alone.

Each pair of consecutive nets in a claim's chains that the results hold is one *comparison*. Its
effect is the difference of the seeds' means, second net minus first, in the metric's units (error
points; response std for Figure 7). The test, stated in every report:

- each net needs at least two seeds; the 95% interval of the difference is Welch's t interval
  (unequal variances: the nets differ in depth and in how much their seeds scatter);
- **supported** when the interval lies wholly on the claimed side of zero, **contradicted** when it
  lies wholly on the other side, **not decided** when it contains zero;
- with one seed a net has no spread to test against: the comparison is not decided and says what it
  saw. Missing trials, and (``final`` claims) trials short of the paper's schedule, also leave it
  not decided, with the reason;
- seed pairs (the same seed for both nets, so the same data order) are counted with the claimed
  sign beside the interval, as a distribution-free second view; the verdict rests on the interval.

A claim is contradicted when any of its comparisons is, supported when all are, else not decided.
``course`` claims are judged at the last evaluation every compared trial has reached; ``final``
claims only on trials that completed the paper's whole schedule. Trials are never pooled across data
(data source, split, test protocol): each such group is judged on its own.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from benchmark.analysis.claims import METRICS, Claim
from benchmark.analysis.trials import PAPER_RECIPE, final_by_trial, iterations_range, paper_schedule
from benchmark.results.read import Results

SUPPORTED, CONTRADICTED, UNDECIDED = "supported", "contradicted", "not decided"
CONFIDENCE = 0.95
_USABLE = ("completed", "running")  # a course claim reads these trials' curves; failed/diverged stop early
_DATA_KEYS = ("data_source", "split", "protocol")


@dataclass(frozen=True)
class Side:
    """One net's values in a comparison: one per seed (or per measured net, for Figure 7)."""

    net: str
    values: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan

    @property
    def low(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def high(self) -> float:
        return max(self.values) if self.values else math.nan


@dataclass(frozen=True)
class Comparison:
    """Two nets of a claim compared: the effect (second mean - first mean), its 95% interval, the
    seed pairs that agree with the claimed sign, the verdict and why."""

    first: Side
    second: Side
    verdict: str
    reason: str
    difference: float = math.nan
    low: float = math.nan
    high: float = math.nan
    seed_pairs: int = 0
    seed_pairs_agreeing: int = 0
    at_step: float = math.nan  # course claims: the iteration the values are from
    detail: str = ""  # Figure 7: how many layers agree
    left_out: str = ""  # trials of the two nets not in the values, and why ("plain56: 1 diverged")


@dataclass(frozen=True)
class ClaimVerdict:
    """A claim judged on one group of the results' data."""

    claim: Claim
    verdict: str
    reason: str
    judged_at: str  # "at 1,200 of 64,000 iterations", "final errors after the whole schedule (64,000 iterations)"
    comparisons: tuple[Comparison, ...]
    data: str = ""  # the data group ("jpeg75") when the results hold more than one


def welch_interval(first: Side, second: Side, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The ``confidence`` interval of mean(second) - mean(first) by Welch's t (both n >= 2):
    scipy's unequal-variance t-test, its degrees of freedom by Welch-Satterthwaite."""
    from scipy import stats  # here, not at the top: importing scipy.stats costs about a second

    difference = second.mean - first.mean
    if first.std == 0.0 and second.std == 0.0:  # every seed gave the same number on both sides: exact
        return difference, difference
    with warnings.catch_warnings():  # seeds that agree to the last digit make scipy warn of cancellation
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = stats.ttest_ind(second.values, first.values, equal_var=False).confidence_interval(confidence)
    return float(interval.low), float(interval.high)


def compare(first: Side, second: Side, sign: int, at_step: float = math.nan) -> Comparison:
    """Judge 'the metric goes from ``first`` to ``second`` in the direction ``sign``' (see the module)."""
    difference = second.mean - first.mean
    shared = sorted(set(first.seeds) & set(second.seeds))
    by_seed_1, by_seed_2 = dict(zip(first.seeds, first.values)), dict(zip(second.seeds, second.values))
    agreeing = sum(1 for s in shared if sign * (by_seed_2[s] - by_seed_1[s]) > 0)
    common = {"difference": difference, "seed_pairs": len(shared), "seed_pairs_agreeing": agreeing,
              "at_step": at_step}
    if first.n < 2 or second.n < 2:
        single = [side.net for side in (first, second) if side.n < 2]
        way = "in the claimed direction" if sign * difference > 0 else "against the claimed direction"
        return Comparison(first, second, UNDECIDED,
                          f"n=1 for {' and '.join(single)}: no test over seeds (saw Δ {difference:+.2f}, {way})",
                          **common)
    low, high = welch_interval(first, second)
    if sign * low > 0 and sign * high > 0:
        verdict, reason = SUPPORTED, "95% interval on the claimed side of 0"
    elif sign * low < 0 and sign * high < 0:
        verdict, reason = CONTRADICTED, "95% interval on the opposite side of 0"
    else:
        verdict, reason = UNDECIDED, f"95% interval [{low:+.2f}, {high:+.2f}] contains 0"
    return Comparison(first, second, verdict, reason, low=low, high=high, **common)


def evaluate_claims(results: Results, claims: tuple[Claim, ...]) -> list[ClaimVerdict]:
    """A verdict for every claim the results can speak to (at least one comparison's nets have
    trials, or Figure 7 responses), per data group; claims whose comparisons repeat an earlier
    claim's exactly (a suite with plain-20 and plain-56 only) are listed once."""
    trials = final_by_trial(results)
    curves = _Curves(results.metrics)
    verdicts: list[ClaimVerdict] = []
    seen: set[tuple] = set()
    for claim in claims:
        if claim.metric == "layer_response_std":
            found = _judge_responses(claim, results, trials)
            groups = [("", found)] if found is not None else []
        else:
            groups = _judge_trials(claim, trials, curves)
        for data, judged in groups:
            key = (claim.metric, claim.judged, data, tuple((c.first.net, c.second.net) for c in judged.comparisons))
            if key in seen:
                continue
            seen.add(key)
            verdicts.append(replace(judged, data=data))
    return verdicts


class _Curves:
    """Every trial's evaluation rows as slices of plain arrays (metrics.csv is sorted by trial and
    step when loaded), for reading a metric at an iteration without a pandas call per trial."""

    def __init__(self, metrics: pd.DataFrame) -> None:
        self._steps = metrics["step"].to_numpy(dtype=float)
        self._columns = {column: metrics[column].to_numpy(dtype=float)
                         for column in ("train_error", "eval_error", "eval_top5_error")}
        trials = metrics["trial_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, trials[1:] != trials[:-1]]) if len(trials) else np.array([], int)
        ends = np.r_[starts[1:], len(trials)]
        self._slices = {trials[s]: (s, e) for s, e in zip(starts, ends)}

    def at(self, trial_id: str, column: str, step: float) -> float:
        """``column`` at the last evaluation at or before ``step`` (NaN when there is none)."""
        if trial_id not in self._slices:
            return math.nan
        start, end = self._slices[trial_id]
        position = start + int(np.searchsorted(self._steps[start:end], step, side="right")) - 1
        return float(self._columns[column][position]) if position >= start else math.nan


def _data_groups(trials: pd.DataFrame, metric: str) -> list[tuple[str, pd.DataFrame]]:
    """Trials split by the data they saw (and, for test metrics, how they were tested), labelled by
    what varies; a training error does not depend on the test protocol."""
    keys = [key for key in _DATA_KEYS if key in trials and (key != "protocol" or metric != "train_error")]
    groups = list(trials.groupby(keys, sort=True)) if len(trials) else []
    varying = [i for i, key in enumerate(keys) if trials[key].nunique() > 1]
    labelled = []
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        labelled.append((", ".join(str(values[i]) for i in varying), group))
    return labelled


def _status_counts(trials: pd.DataFrame) -> str:
    counts = trials["status"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _side(net: str, trials: pd.DataFrame, values: pd.Series) -> Side:
    finite = np.isfinite(values.to_numpy(dtype=float))
    seeds = trials["seed"].to_numpy()[finite]
    return Side(net, tuple(float(v) for v in values.to_numpy(dtype=float)[finite]),
                tuple(int(s) if np.isfinite(s) else -1 for s in seeds))


def _judge_trials(claim: Claim, trials: pd.DataFrame, curves: _Curves) -> list[tuple[str, ClaimVerdict]]:
    column, final_column = METRICS[claim.metric]
    judged = []
    for data, group in _data_groups(trials[trials["dataset"] == claim.dataset], claim.metric):
        pairs = claim.pairs(set(group["variant"]))
        if not pairs:
            continue
        by_net = {net: members for net, members in group.groupby("variant")}
        schedule = float(group["schedule"].max())
        comparisons = []
        for first, second in pairs:
            a, b = by_net[first], by_net[second]
            if claim.judged == "course":
                comparisons.append(_course(claim, (first, a), (second, b), column, curves))
            else:
                comparisons.append(_final(claim, (first, a), (second, b), final_column))
        judged.append((data, _combine(claim, tuple(comparisons), schedule)))
    return judged


def _missing(net: str, trials: pd.DataFrame) -> str:
    return f"no trial of {net} has results yet ({_status_counts(trials)})"


def _course(claim: Claim, first: tuple[str, pd.DataFrame], second: tuple[str, pd.DataFrame], column: str,
            curves: _Curves) -> Comparison:
    """Compare at the last iteration every usable trial of both nets has reached."""
    usable = {net: t[t["status"].isin(_USABLE) & (t["n_points"] > 0)] for net, t in (first, second)}
    empty = [net for net, t in (first, second) if usable[net].empty]
    if empty:
        net = empty[0]
        trials = dict((first, second))[net]
        return Comparison(Side(first[0], (), ()), Side(second[0], (), ()), UNDECIDED, _missing(net, trials))
    step = float(min(usable[first[0]]["last_step"].min(), usable[second[0]]["last_step"].min()))
    sides = [_side(net, usable[net], pd.Series([curves.at(t, column, step) for t in usable[net]["trial_id"]],
                                               dtype=float))
             for net, _ in (first, second)]
    comparison = compare(sides[0], sides[1], claim.sign, at_step=step)
    left = {net: t[~t.index.isin(usable[net].index)] for net, t in (first, second)}
    left_out = "; ".join(f"{net}: {_status_counts(t)} left out" for net, t in left.items() if len(t))
    if not left_out:
        return comparison
    comparison = replace(comparison, left_out=left_out)
    # Survivorship: a diverged seed is evidence (its error is at chance or worse), and a failed one
    # could have ended anywhere. Left out on the side where a high error opposes the claim (the
    # first net when the metric should rise, the second when it should fall), or failed on either
    # side, they could change the sign: then the comparison is not "supported".
    opposing = [net for index, (net, t) in enumerate(left.items())
                if (t["status"] == "failed").any()
                or ((t["status"] == "diverged").any() and (index == 0) == (claim.sign > 0))]
    if comparison.verdict == SUPPORTED and opposing:
        return replace(comparison, verdict=UNDECIDED,
                       reason=f"supported by the seeds that finished, but {' and '.join(opposing)} left out seeds "
                              "that could change the sign (diverged against the claim, or failed)")
    if comparison.verdict == UNDECIDED:
        return replace(comparison, reason=f"{comparison.reason}; {left_out}")
    return comparison


def _final(claim: Claim, first: tuple[str, pd.DataFrame], second: tuple[str, pd.DataFrame],
           final_column: str) -> Comparison:
    """Compare the final errors of the trials that completed the paper's whole schedule."""
    complete = {net: t[t["complete"]] for net, t in (first, second)}
    sides = [_side(net, complete[net], complete[net][final_column]) for net, _ in (first, second)]
    missing, short = [], []
    for (net, trials), side in zip((first, second), sides):
        ran = trials[trials["n_points"] > 0]
        if side.n:
            continue
        if ran.empty:
            missing.append(_missing(net, trials))
        else:
            short.append((net, iterations_range(ran["reached"], float(ran["schedule"].max()))))
    if missing:
        return Comparison(sides[0], sides[1], UNDECIDED, "; ".join(missing))
    if short:
        if len(short) == 2 and short[0][1] == short[1][1]:
            reason = f"needs the paper's whole schedule: {short[0][0]} and {short[1][0]} reached {short[0][1]}"
        else:
            reason = "needs the paper's whole schedule: " + ", ".join(f"{net} reached {at}" for net, at in short)
        return Comparison(sides[0], sides[1], UNDECIDED, reason)
    return compare(sides[0], sides[1], claim.sign)


def _combine(claim: Claim, comparisons: tuple[Comparison, ...], schedule: float) -> ClaimVerdict:
    verdicts = [c.verdict for c in comparisons]
    if CONTRADICTED in verdicts:
        verdict = CONTRADICTED
        reason = (f"{verdicts.count(CONTRADICTED)} of {len(verdicts)} comparisons contradict it" if len(verdicts) > 1
                  else "the comparison contradicts it")
    elif all(v == SUPPORTED for v in verdicts):
        verdict, reason = SUPPORTED, (f"all {len(verdicts)} comparisons support it" if len(verdicts) > 1 else
                                      "the comparison supports it")
    else:
        verdict = UNDECIDED
        reasons = list(dict.fromkeys(c.reason for c in comparisons if c.verdict == UNDECIDED))
        supported = verdicts.count(SUPPORTED)
        reason = (f"{supported} of {len(verdicts)} comparisons support it; " if supported else "") + "; ".join(reasons)
    left_out = [c.left_out for c in comparisons if c.left_out]
    if left_out and verdict != UNDECIDED:  # the seeds a verdict stands without, said beside it
        reason += "; left out: " + "; ".join(dict.fromkeys(left_out))
    steps = [c.at_step for c in comparisons if not math.isnan(c.at_step)]
    if claim.judged == "course":
        if not steps:
            judged_at = "nothing measured yet"
        elif min(steps) >= schedule:
            judged_at = f"at the end of the paper's schedule ({schedule:,.0f} iterations)"
        else:
            judged_at = f"at {iterations_range(steps, schedule)}"
    elif any(c.first.n and c.second.n for c in comparisons):
        judged_at = f"final errors after the paper's whole schedule ({schedule:,.0f} iterations)"
    else:
        judged_at = f"final errors: needs the paper's whole schedule ({schedule:,.0f} iterations)"
    return ClaimVerdict(claim, verdict, reason, judged_at, comparisons)


def _judge_responses(claim: Claim, results: Results, trials: pd.DataFrame) -> ClaimVerdict | None:
    """Figure 7 from `analyze`'s layer_responses.csv: each trained net's mean std of its 3×3 layer
    responses; nets of the same model at the same step (several checkpoints) are its seeds."""
    responses = results.analysis.get("layer_responses")
    present = set(trials.loc[trials["dataset"] == claim.dataset, "model"])
    if responses is not None:
        present |= set(responses["model"])
    pairs = claim.pairs(present)
    if not pairs:
        return None
    schedule = paper_schedule(PAPER_RECIPE[claim.dataset], claim.dataset)
    trained = (responses[(responses["checkpoint"] != "init") & (responses["step"].fillna(-1) != 0)]
               if responses is not None else None)
    comparisons = []
    for first, second in pairs:
        empty = (Side(first, (), ()), Side(second, (), ()))
        if responses is None:
            models = " ".join(dict.fromkeys(net for pair in pairs for net in pair))
            comparisons.append(Comparison(*empty, UNDECIDED, "no layer responses measured (python -m benchmark "
                                          f"analyze --models {models} --checkpoint ... --out "
                                          f"{results.path / 'analysis'})"))
            continue
        steps = [set(trained.loc[trained["model"] == net, "step"].dropna()) for net in (first, second)]
        common = sorted(steps[0] & steps[1])
        if not common:
            measured = responses[responses["model"].isin([first, second])]
            what = "only at initialisation, where every response is about 1 by construction" if trained[
                trained["model"].isin([first, second])].empty else "not at the same training step"
            reason = (f"{first} and {second} measured {what}" if not measured.empty
                      else f"no layer responses of {first} or {second}")
            comparisons.append(Comparison(*empty, UNDECIDED, reason))
            continue
        step = common[-1]
        nets = [trained[(trained["model"] == net) & (trained["step"] == step)] for net in (first, second)]
        per_net = [rows.assign(net=rows.groupby("layer_index").cumcount()).groupby("net")["value"].mean()
                   for rows in nets]
        sides = [Side(net, tuple(float(v) for v in values), ()) for net, values in zip((first, second), per_net)]
        comparison = compare(sides[0], sides[1], claim.sign, at_step=step)
        layers = [rows.groupby("layer_index")["value"].mean() for rows in nets]
        if len(layers[0]) == len(layers[1]):
            agree = int((claim.sign * (layers[1].to_numpy() - layers[0].to_numpy()) > 0).sum())
            word = "smaller" if claim.sign < 0 else "larger"
            comparison = replace(comparison, detail=f"{second} {word} in {agree} of {len(layers[0])} layers")
        comparisons.append(comparison)
    return _combine(claim, tuple(comparisons), schedule)

