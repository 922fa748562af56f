"""The domain errors: what the CLI prints as a single line before exiting non-zero.

Exit codes: 2 for a usage error (the command line is wrong: a bad option value or combination),
1 for a runtime error (the world is: a missing store, an unreachable device, a failed write).
"""


class MltelemetryError(Exception):
    """A user-facing failure (bad input, missing store, unreachable device) with a one-line message."""

    exit_code = 1


class UsageError(MltelemetryError):
    """The command line is wrong (an option's value, or options that do not go together): exit code 2."""

    exit_code = 2
