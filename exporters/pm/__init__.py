"""mltelemetry.exporters.pm."""
