"""mltelemetry.workload."""
