"""The one domain error: what the CLI prints as a single line before exiting non-zero."""


class MltelemetryError(Exception):
    """A user-facing failure (bad input, missing store, unreachable device) with a one-line message."""
