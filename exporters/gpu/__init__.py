"""GPU exporter (NVML): ``nvml`` is the driver, ``collector`` the collector, ``cli`` the command,
(the tests' stand-in for NVML is tests/fakes/fake_nvml.py, outside the package)."""
