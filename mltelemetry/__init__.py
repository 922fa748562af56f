"""mltelemetry: measure the energy and hardware cost of training ML models."""

__version__ = "0.2.0"
