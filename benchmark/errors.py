"""User-facing errors.

Every mistake a user can make (a bad suite file, an unknown model, a missing dataset) is raised as a
`BenchmarkError` whose message is one line naming the file, key or value and what was expected. The
CLI prints it as ``error: <message>`` and exits with status 2; anything else is a bug and keeps its
traceback.
"""


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
