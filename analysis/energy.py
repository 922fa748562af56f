"""Energy arithmetic on counters: a window's energy is the counter's increase between its edges.

The counter is read at the window's edges by linear interpolation between the samples either
side, so a window that starts or ends inside a sampling interval gets its share of it. A
counter that drops (exporter restart, driver reload) is treated as a reset to zero, as
Prometheus' ``increase()`` does, when the samples either side of the drop are close together; a
drop across a longer gap lost the energy of the exporter's downtime, so a window holding it gets
no figure (:func:`unknown_intervals`).
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


def increases(ts_ns: np.ndarray, values: np.ndarray, starts_ns: np.ndarray, ends_ns: np.ndarray,
              max_gap_ns: float | None = None) -> np.ndarray:
    """Counter increase over each window [starts_ns[i], ends_ns[i]]; NaN where the samples do not bracket both edges.

    Resets are undone (:func:`monotonic`) and the counter is interpolated linearly at the edges. With
    ``max_gap_ns``, an edge that falls between two samples further apart than that gives NaN too:
    how the energy of a long gap spreads inside it is unknown, so it is not made up. (A window that
    holds a whole gap is still exact: the counter integrated through it at the source.) So does a
    window that holds a drop of the counter across such a gap: what it counted before it restarted
    is lost.
    """
    starts_ns, ends_ns = np.asarray(starts_ns, np.int64), np.asarray(ends_ns, np.int64)
    out = np.full(len(starts_ns), np.nan)
    if len(ts_ns) == 0:
        return out
    counter = monotonic(values)
    inside = ((starts_ns >= ts_ns[0]) & (starts_ns <= ts_ns[-1])
              & (ends_ns >= ts_ns[0]) & (ends_ns <= ts_ns[-1]))
    if max_gap_ns is not None and len(ts_ns) > 1:
        for edges in (starts_ns, ends_ns):
            right = np.clip(np.searchsorted(ts_ns, edges, side="left"), 1, len(ts_ns) - 1)
            on_sample = ts_ns[np.clip(right - 1, 0, None)] == edges
            on_sample |= ts_ns[right] == edges
            inside &= on_sample | (ts_ns[right] - ts_ns[right - 1] <= max_gap_ns)
    if inside.any():  # times relative to the first sample keep float64 exact to the nanosecond for years
        origin = ts_ns[0]
        t = (ts_ns - origin).astype(np.float64)
        out[inside] = (np.interp((ends_ns[inside] - origin).astype(np.float64), t, counter)
                       - np.interp((starts_ns[inside] - origin).astype(np.float64), t, counter))
    if max_gap_ns is not None:
        out[windows_holding(ts_ns, unknown_intervals(ts_ns, values, max_gap_ns), starts_ns, ends_ns)] = np.nan
    return out


def unknown_intervals(ts_ns: np.ndarray, values: np.ndarray, max_gap_ns: float, counter: bool = True) -> np.ndarray:
    """Per sampling interval (one fewer than samples): whether its energy is unknown.

    For a counter, an interval longer than ``max_gap_ns`` across which the counter drops (it restarted
    while no one read it); for a power series (``counter=False``), any interval longer than that.
    """
    ts_ns, values = np.asarray(ts_ns), np.asarray(values, np.float64)
    if len(ts_ns) < 2:
        return np.zeros(0, bool)
    long = np.diff(ts_ns) > max_gap_ns
    return long & (values[1:] < values[:-1]) if counter else long


def windows_holding(ts_ns: np.ndarray, intervals: np.ndarray, starts_ns: np.ndarray, ends_ns: np.ndarray) -> np.ndarray:
    """Whether each window [start, end] overlaps one of the sampling intervals marked in ``intervals``."""
    k = np.flatnonzero(intervals)
    if len(k) == 0:
        return np.zeros(len(starts_ns), bool)
    lo, hi = np.asarray(ts_ns)[k], np.asarray(ts_ns)[k + 1]  # both increasing: the intervals do not overlap
    return (np.searchsorted(lo, ends_ns, side="left") - np.searchsorted(hi, starts_ns, side="right")) > 0


def integral_counter(ts_ns: np.ndarray, power_w: np.ndarray, max_gap_ns: float) -> np.ndarray:
    """Power integrated by the trapezoidal rule into a counter (J); a gap longer than ``max_gap_ns`` adds nothing.

    The fallback where a series has power but no energy counter: its increases are then window energies.
    """
    if len(ts_ns) < 2:
        return np.zeros(len(ts_ns))
    dt = np.diff(ts_ns).astype(np.float64) / 1e9
    steps = (power_w[1:] + power_w[:-1]) / 2 * dt
    steps[np.diff(ts_ns) > max_gap_ns] = 0.0
    return np.concatenate(([0.0], np.cumsum(steps)))


def window_counts(ts_ns: np.ndarray, starts_ns: np.ndarray, ends_ns: np.ndarray) -> np.ndarray:
    """Samples inside each window [start, end] (both edges included)."""
    return np.searchsorted(ts_ns, ends_ns, side="right") - np.searchsorted(ts_ns, starts_ns, side="left")


def window_means(ts_ns: np.ndarray, values: np.ndarray, starts_ns: np.ndarray, ends_ns: np.ndarray) -> np.ndarray:
    """Mean of the samples inside each window [start, end]; NaN for a window with no sample (never padded)."""
    lo = np.searchsorted(ts_ns, starts_ns, side="left")
    hi = np.searchsorted(ts_ns, ends_ns, side="right")
    sums = np.concatenate(([0.0], np.cumsum(np.asarray(values, np.float64))))
    n = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[np.maximum(hi, lo)] - sums[lo]) / np.maximum(n, 1), np.nan)


def coverages(ts_ns: np.ndarray, starts_ns: np.ndarray, ends_ns: np.ndarray, interval_ns: float) -> np.ndarray:
    """Per window: the fraction of the samples expected at ``interval_ns`` that are present inside it, capped at 1
    (1 for a window shorter than one interval: no sample need fall inside, the edges carry it)."""
    expected = np.floor((np.asarray(ends_ns) - np.asarray(starts_ns)) / interval_ns)
    present = window_counts(ts_ns, starts_ns, ends_ns)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected < 1, 1.0, np.minimum(1.0, present / np.maximum(expected, 1)))


def sampling_interval_ns(ts_ns: np.ndarray) -> float:
    """The series' typical sampling interval (median spacing); 1 s when there are fewer than two samples."""
    return float(np.median(np.diff(ts_ns))) if len(ts_ns) > 1 else 1e9
