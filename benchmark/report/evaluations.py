"""The report's section on evaluations of the suite's own nets (results/evaluations.csv, written by
`python -m benchmark evaluate`): each scoring of a trial's kept or exported weights beside the final
test error its trial recorded, so a reader sees the weights in the folder give the folder's numbers
(or on which data and device they do not)."""

from __future__ import annotations

from benchmark.report.formats import number, signed
from benchmark.report.render import Block, Heading, Paragraph, Table
from benchmark.results.read import Results


def section(results: Results) -> list[Block]:
    """A heading, a sentence and one row per evaluation of this suite's nets; nothing when there is none."""
    evaluations = results.evaluations
    if evaluations is None or evaluations.empty:
        return []
    recorded = results.runs.set_index("trial_id")
    rows = []
    for row in evaluations.itertuples(index=False):
        trained = recorded.loc[row.trial_id]
        crops = f"{int(row.crops)} crop{'s' if int(row.crops) > 1 else ''}"
        rows.append((row.trial_id, row.weights, f"{row.dataset} {row.eval_split} ({row.data_source}, "
                     f"{int(row.images):,} images, {crops})", row.normalisation, number(row.top1_error),
                     number(trained["final_eval_error"]), signed(row.top1_error - trained["final_eval_error"]),
                     number(row.top5_error), row.device, row.evaluated_at))
    header = ("trial", "weights", "scored on", "input", "top-1 error", "recorded test error", "difference",
              "top-5 error", "device", "evaluated at")
    return [Heading("Evaluations of these nets"),
            Paragraph(f"Each row scores a trial's weights (`python -m benchmark evaluate`, {len(rows)} in "
                      "evaluations.csv) beside the final test error its trial recorded: on the same data and "
                      "device the difference is 0.00. Errors are percentages."),
            Table(header, tuple(tuple(str(cell) for cell in row) for row in rows))]
