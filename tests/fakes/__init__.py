"""Stand-ins for parts that cannot run on a CI machine (NVML without a GPU); used by the tests only."""
