"""mltelemetry.exporters."""
