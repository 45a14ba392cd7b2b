"""One error hierarchy for the whole package.

Every error the library raises on purpose derives from :class:`WeightLakeError`, and
most also derive from the builtin a caller would naturally catch (``KeyError`` for a
missing model, ``ValueError`` for bad input).  The CLI turns any ``WeightLakeError``
into one line on stderr and a non-zero exit code; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class WeightLakeError(Exception):
    """Root of every error raised by weightlake on purpose."""


class LakeNotFoundError(WeightLakeError, FileNotFoundError):
    """The lake directory has no committed snapshot (and none was asked to be created)."""


class LakeWriteError(WeightLakeError, OSError):
    """The lake could not be written (disk full, read-only, permissions); nothing was committed."""


class CommitConflictError(WeightLakeError, RuntimeError):
    """Another writer committed first; re-open the lake and try again."""


class NoSuchModelError(WeightLakeError, KeyError):
    """A model id (or zoo, table, scenario) that the pinned snapshot does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class NoSuchTableError(NoSuchModelError):
    """A table, zoo, scenario or named query that does not exist."""


class ArchitectureError(WeightLakeError, ValueError):
    """A tensor, state_dict or flat vector that does not fit the architecture."""


class IngestError(WeightLakeError, ValueError):
    """Bad input found while ingesting; says file, row and column where it can."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 column: str | None = None) -> None:
        where = ", ".join(
            part for part in (
                f"file {path!r}" if path is not None else "",
                f"row {row}" if row is not None else "",
                f"column {column!r}" if column is not None else "",
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.path, self.row, self.column = path, row, column


class UnsafeFileError(IngestError):
    """A file whose content would need full unpickling (or other code execution) to read."""


class IntegrityError(WeightLakeError, RuntimeError):
    """A snapshot whose files are missing, truncated or do not match their hashes."""


class QueryError(WeightLakeError, ValueError):
    """A SQL query or named query that could not run (bad SQL, missing parameter)."""


class TrainError(WeightLakeError, ValueError):
    """Bad trainer arguments, or a finished model folder trained with another configuration."""


class HeadsUnknownError(ArchitectureError):
    """A merging-model checkpoint whose number of attention heads nothing records (no shape holds it)."""

class FitError(WeightLakeError, ValueError):
    """A statistical fit that has no meaning on the data given (too few non-zero eigenvalues, ...)."""


class ConfigError(WeightLakeError, ValueError):
    """A setting (argument or ``WEIGHTLAKE_*`` variable) that cannot be read, e.g. a memory budget."""
