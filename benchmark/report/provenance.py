"""Where each trial's numbers came from, as recorded when it ran, and whether a suite mixes sources.

A suite whose trials ran on different code, devices or data is not one experiment: its comparisons
may measure the difference between two commits or two machines as much as between two nets. The
report lists one code version per trial (runs.csv's ``code_version`` where a writer records one,
else ``git_commit``) and the scorecard says when a suite mixes them. Trials still pending never ran
and are left out.
"""

from __future__ import annotations

import pandas as pd

from benchmark.report.load import Results

CODE_COLUMNS = ("code_version", "git_commit")  # the first one present and filled wins, trial by trial
_SHORT = 12  # characters of a commit hash shown; runs.csv holds the whole one


def code_version(runs: pd.DataFrame) -> pd.Series:
    """The code version each trial recorded ('' where none), commit hashes shortened to 12 characters.

    Two forms mark uncommitted changes: a ``git_commit`` ending in '-dirty' (the exact code is not
    known) and a ``code_version`` of 'commit+hash' (the hash of those changes: equal hashes, equal code).
    """
    version = pd.Series("", index=runs.index, dtype=object)
    for column in reversed([c for c in CODE_COLUMNS if c in runs]):
        filled = runs[column].astype(str).str.strip()
        version = filled.where(filled != "", version)
    return version.map(_short)


def _short(version: str) -> str:
    head, plus, changes = version.partition("+")
    head, dirty, _ = head.partition("-dirty")
    if len(head) == 40 and all(ch in "0123456789abcdef" for ch in head):
        head = head[:_SHORT]
    return head + dirty + plus + changes


def provenance_table(results: Results) -> pd.DataFrame:
    """One row per trial that ran: trial_id, variant, seed, code version, device, data source, started_at."""
    runs = results.runs[results.runs["status"] != "pending"]
    columns = {"trial_id": runs["trial_id"], "variant": runs["variant"], "seed": runs["seed"],
               "code version": code_version(runs), "device": runs["device"], "data source": runs["data_source"]}
    if "started_at" in runs:
        columns["started at"] = runs["started_at"]
    return pd.DataFrame(columns).reset_index(drop=True)


def _counted(values: pd.Series) -> str:
    counts = values.value_counts()
    return ", ".join(f"{value or 'unrecorded'} ({n} trial{'s' if n > 1 else ''})" for value, n in counts.items())


def mixed_provenance(results: Results) -> list[str]:
    """One sentence per way the suite's trials differ in where they ran (empty when they do not)."""
    table = provenance_table(results)
    warnings = []
    versions = table["code version"]
    if versions.nunique() > 1:
        warnings.append(f"trials ran on {versions.nunique()} code versions: {_counted(versions)}")
    dirty = int(versions.str.endswith("-dirty").sum())
    if dirty:
        warnings.append(f"{dirty} of {len(table)} trials ran with uncommitted changes ('-dirty'): their exact code "
                        "is not recorded")
    changed = int(versions.str.contains("+", regex=False).sum())
    if changed:
        warnings.append(f"{changed} of {len(table)} trials ran with uncommitted changes ('commit+hash of the "
                        "changes')")
    if (versions == "").any():
        warnings.append(f"{int((versions == '').sum())} trials recorded no code version")
    if table["device"].nunique() > 1:
        warnings.append(f"trials ran on {table['device'].nunique()} devices: {_counted(table['device'])}")
    runs = results.runs[results.runs["status"] != "pending"]
    for column, label in (("data_source", "data sources"), ("split", "splits")):
        if column in runs and runs[column].nunique() > 1:
            warnings.append(f"trials used {runs[column].nunique()} {label}: {_counted(runs[column])} "
                            "(the verdicts judge each apart)")
    return warnings


def provenance_summary(results: Results) -> str:
    """One sentence for the scorecard: what differs, or that nothing does."""
    warnings = mixed_provenance(results)
    if warnings:
        return "Provenance differs: " + "; ".join(warnings) + "."
    table = provenance_table(results)
    if table.empty:
        return "Provenance: no trial has run yet."
    return (f"Provenance: all {len(table)} trials that ran share one code version ({table['code version'].iloc[0]}), "
            f"one device ({table['device'].iloc[0]}) and one data source ({table['data source'].iloc[0]}).")
