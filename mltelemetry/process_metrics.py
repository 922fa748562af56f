"""The process_* series every exporter's /metrics ends with: its own CPU time, memory and file descriptors.

The names, help texts and numbers of prometheus-client's ``ProcessCollector`` (what Prometheus' own exporters
publish), read from /proc here: an exporter need not import prometheus-client (≈ 4.5–10 MB of its resident
memory) nor build a registry for six numbers.
"""

from __future__ import annotations

import os
import resource

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = resource.getpagesize()

ProcessValue = tuple[str, str, str, float]  # (family, type, help, value)


def boot_time_s(proc: str = "/proc") -> float | None:
    """The kernel's boot time (``btime`` of /proc/stat), None where /proc cannot be read."""
    try:
        with open(f"{proc}/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


class ProcessMetrics:
    """This process' own series, from /proc/self (``proc`` names another procfs, for tests)."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self.boot_s = boot_time_s(proc)

    def values(self) -> list[ProcessValue]:
        """Each series /proc answers; none where it cannot be read (as prometheus-client's collector)."""
        if self.boot_s is None:
            return []
        try:
            with open(f"{self.proc}/self/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[-1].split()  # after the command name, which may hold spaces
            open_fds = len(os.listdir(f"{self.proc}/self/fd"))
        except OSError:
            return []
        # fields[0] is the state, /proc/PID/stat's field 3 (proc(5)): utime is 14, stime 15, starttime 22, ...
        out = [
            ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", float(fields[20])),
            ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", float(fields[21]) * _PAGE),
            ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
             int(fields[19]) / _TICKS + self.boot_s),
            ("process_cpu_seconds", "counter", "Total user and system CPU time spent in seconds.",
             int(fields[11]) / _TICKS + int(fields[12]) / _TICKS),
            ("process_open_fds", "gauge", "Number of open file descriptors.", float(open_fds)),
        ]
        max_fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # the soft limit, as /proc/self/limits says
        if max_fds != resource.RLIM_INFINITY:
            out.append(("process_max_fds", "gauge", "Maximum number of open file descriptors.", float(max_fds)))
        return out
