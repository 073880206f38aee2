"""After a run, Figure 7 of its own nets: the layer responses of every trained plain and residual
net of the same depth, so that the scorecard judges that claim over seeds too (issue 21) instead of
asking the user to run `python -m benchmark analyze` by hand.

Section 4.2, Figure 7: the std of each 3x3 layer's response (after BN, before the addition and the
ReLU) of trained nets on CIFAR-10 test images; residual functions respond less than plain layers.
Each completed trial's last checkpoint, or the final weights its results folder keeps, is measured
(`benchmark.analysis.diagnostics.analyze`, with the run's own data as the probe), and the tables go
where `analyze --out` puts them:
`results/<suite>/analysis/` (gradient_norms.csv, layer_responses.csv).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark import BenchmarkError
from benchmark.results.tables import read_runs
from benchmark.results.weights import kept_weights
from benchmark.training.checkpoint import PAYLOAD_FILE

if TYPE_CHECKING:
    from benchmark.analysis.claims import Claim
    from benchmark.suite.spec import Suite


def trained_checkpoint(folder: Path, run: dict[str, str]) -> Path | None:
    """A completed trial's trained state on this machine's disk, from its runs.csv row: its last
    checkpoint (the local executor's folder, or `checkpoint` inside the Ray executor's storage: the
    results folder's own `_state/ray`, or a local path), else the final weights the folder keeps
    (`weights/<trial>.safetensors`: they travel with a cloned or copied results folder, which
    leaves `_state/` behind); None when neither is here (remote storage, s3://..., and no weights)."""
    location, storage = run.get("checkpoint") or "", run.get("storage") or ""
    candidates: list[Path] = []
    if location and storage in ("", "local"):
        candidates = [Path(location), folder / "_state" / "checkpoints" / run["trial_id"]]
    elif location and "://" not in storage:
        root = Path(storage)
        candidates = [(root if root.is_absolute() else folder / root) / location]
    found = next((c for c in candidates if (c / PAYLOAD_FILE).is_file()), None)
    weights = kept_weights(folder, run["trial_id"])
    return found or (weights if weights.is_file() else None)


def measure_layer_responses(folder: Path, suite: Suite, claims: Sequence[Claim]) -> str:
    """Measure the completed trials that a Figure 7 claim compares and write the tables; returns the
    line to print (what was measured, or why nothing was)."""
    from benchmark.analysis.diagnostics import analyze, write_analysis

    wanted = {net for claim in claims if claim.metric == "layer_response_std" and claim.dataset == suite.data.dataset
              for chain in claim.chains for net in chain}
    runs = [run for run in read_runs(folder / "runs.csv").values()
            if run.get("status") == "completed" and run.get("model") in wanted and run.get("preact") != "True"]
    measured = [(run["model"], checkpoint) for run in runs if (checkpoint := trained_checkpoint(folder, run))]
    present = {model for model, _ in measured}
    if not any(claim.pairs(present) for claim in claims if claim.metric == "layer_response_std"):
        return ""  # no plain and residual net of one depth among the trained ones: nothing to compare
    source = runs[0].get("data_source") or suite.data.source
    try:
        gradients, responses = analyze([m for m, _ in measured], [c for _, c in measured], source=source,
                                       root=suite.data.root)
    except BenchmarkError as exc:
        return f"analysis: Figure 7 not measured: {exc}"
    write_analysis(gradients, responses, folder / "analysis")
    return (f"analysis: Figure 7's layer responses of {len(measured)} trained nets ({', '.join(sorted(present))}) "
            f"written to {folder / 'analysis'}")
