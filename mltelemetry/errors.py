"""The domain errors: what the CLI prints as a single line before exiting non-zero.

Exit codes: 2 for a usage error (the command line is wrong: a bad option value or combination),
1 for a runtime error (the world is: a missing store, an unreachable device, a failed write).
"""

from __future__ import annotations


class MltelemetryError(Exception):
    """A user-facing failure (bad input, missing store, unreachable device) with a one-line message."""

    exit_code = 1


class UsageError(MltelemetryError):
    """The command line is wrong (an option's value, or options that do not go together): exit code 2."""

    exit_code = 2


class StoreWriteError(MltelemetryError):
    """The embedded store did not take a write (disk full, read-only file, I/O error, damaged file).

    Nothing of that write is stored: the transaction was rolled back whole. ``path`` is the store
    file, ``disk_full`` whether the cause was a full disk (SQLITE_FULL). A caller that must not go on
    without its records (a campaign) stops on it; an exporter keeps its samples and retries.
    """

    def __init__(self, message: str, path: object, disk_full: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.disk_full = disk_full
