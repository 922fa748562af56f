"""mltelemetry.analysis."""
