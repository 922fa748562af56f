"""Energy arithmetic on counters: a window's energy is the counter's increase between its edges.

The counter is read at the window's edges by linear interpolation between the samples either
side, so a window that starts or ends inside a sampling interval gets its share of it. A
counter that drops (exporter restart, driver reload) is treated as a reset to zero, as
Prometheus' ``increase()`` does.
"""

from __future__ import annotations

import numpy as np


def monotonic(values: np.ndarray) -> np.ndarray:
    """The counter with resets undone: after a drop, the value before the drop is added to what follows."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return values.copy()
    drops = np.where(values[1:] < values[:-1], values[:-1], 0.0)
    return values + np.concatenate(([0.0], np.cumsum(drops)))


def counter_at(ts_ns: np.ndarray, counter: np.ndarray, t_ns: int) -> float | None:
    """The (monotonic) counter interpolated at ``t_ns``; None outside the samples' time range."""
    if len(ts_ns) == 0 or t_ns < ts_ns[0] or t_ns > ts_ns[-1]:
        return None
    return float(np.interp(t_ns, ts_ns, counter))


def increase(ts_ns: np.ndarray, values: np.ndarray, start_ns: int, end_ns: int) -> float | None:
    """Counter increase over [start_ns, end_ns]; None when the samples do not bracket both edges."""
    counter = monotonic(values)
    at_start, at_end = counter_at(ts_ns, counter, start_ns), counter_at(ts_ns, counter, end_ns)
    if at_start is None or at_end is None:
        return None
    return at_end - at_start


def coverage(ts_ns: np.ndarray, start_ns: int, end_ns: int, interval_ns: float) -> float:
    """Fraction of the samples expected at ``interval_ns`` that are present inside the window (capped at 1)."""
    expected = np.floor((end_ns - start_ns) / interval_ns)
    if expected < 1:  # shorter than one interval: no sample need fall inside, the edges carry it
        return 1.0
    present = np.count_nonzero((ts_ns >= start_ns) & (ts_ns <= end_ns))
    return min(1.0, present / expected)
