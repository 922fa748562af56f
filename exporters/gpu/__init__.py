"""GPU exporter (NVML): ``nvml`` is the driver, ``collector`` the collector, ``cli`` the command,
``fake_nvml`` the scripted stand-in for NVML that the CI tests use."""
