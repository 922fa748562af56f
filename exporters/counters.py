"""One way to turn an energy counter that may wrap or restart into a total that only grows (RAPL, NVML, meters)."""

from __future__ import annotations


class MonotonicCounter:
    """A counter read again and again, as a total that never goes back.

    The total starts at the first reading. A reading below the previous one is a wrap-around where
    the counter has a range (``wrap_at``: it went past it and on from zero, as RAPL's
    ``max_energy_range_uj``), else a restart from zero (a driver reload, a meter's new integration
    run), read as Prometheus reads a counter reset; ``restarted`` says so where the source knows it
    even though the value went up. The total is the reading plus an offset that grows at each wrap
    or restart, so between them it is the reading itself, with no rounding summed up tick by tick.
    """

    def __init__(self, wrap_at: float | None = None) -> None:
        self.wrap_at = wrap_at
        self.last: float | None = None  # the previous reading, as read
        self.offset: float = 0  # what earlier wraps and restarts add to the reading
        self.wraps = 0
        self.restarts = 0

    @property
    def total(self) -> float | None:
        return None if self.last is None else self.offset + self.last

    def add(self, reading: float, restarted: bool = False) -> float:
        """Account one reading; the total up to it."""
        if self.last is not None and (restarted or reading < self.last):
            if self.wrap_at is not None and not restarted:
                self.offset += self.wrap_at
                self.wraps += 1
            else:
                self.offset += self.last
                self.restarts += 1
        self.last = reading
        return self.offset + reading
