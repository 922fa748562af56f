"""GPU exporter (NVML)."""
