"""A reproduction benchmark suite for He, Zhang, Ren, Sun, "Deep Residual Learning for Image
Recognition" (CVPR 2016, arXiv:1512.03385).

The package is laid out as the pipeline it runs (docs/interfaces.md, "Layout"): `suite` (the YAML
files' schema) -> `fleet` (runs the trials) -> `training` (one trial) -> `results` (the tidy tables)
-> `analysis` (the paper's claims, decided) -> `report` (rendered); beside them `models`, `data`,
`throughput` and `hardware`.

User-facing errors live here, at the root every package can import: every mistake a user can make
(a bad suite file, an unknown model, a missing dataset) is raised as a `BenchmarkError` whose
message is one line naming the file, key or value and what was expected. The CLI prints it as
``error: <message>`` and exits with status 2; anything else is a bug and keeps its traceback.
"""

__version__ = "0.1.0"


class BenchmarkError(ValueError):
    """A clear, one-line error about the user's input (exit status 2 at the CLI)."""


class ModelError(BenchmarkError):
    """An unknown model name, or an option the model's family does not have."""


class DataError(BenchmarkError):
    """A dataset that is missing, corrupt, or not of the expected shape."""


class SuiteError(BenchmarkError):
    """A suite file or override that does not match the schema."""


class ResultsError(BenchmarkError):
    """A results folder or table that is missing, empty or malformed."""


class ClaimsError(BenchmarkError):
    """A claims file (the paper's findings as data) that does not match its schema."""


class WeightsError(BenchmarkError):
    """A weights file that is missing, unreadable, would run code when read, or does not fit the model."""
