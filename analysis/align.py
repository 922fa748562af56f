"""Clock alignment check: how far the power meter's series lags another series that moves with it.

The meter's timestamps come from the exporter, after the meter's averaging, its update cycle, the
serial line and (for PTDaemon) another host; a workload's events come from the SUT's clock. A
window's energy is only right if the two agree. ``estimate_offset`` measures the lag between the
meter's power and a series that should step at the same moments (host CPU utilisation, GPU power)
by cross-correlating the two around the meter's step changes:

1. Each series is a sequence of averages over its sampling interval, stamped at the interval's
   end, so each sample is moved to the middle of its interval (by half the median spacing, or
   the averaging windows given). The series are then resampled linearly onto a fine grid and
   differentiated: a step of the load becomes a bump in each derivative.
2. Steps are found in the meter's series (differences well above its noise, consecutive ones
   merged); those closer to each other than the bumps are wide are left out.
3. Coarse lag: the sum over steps of the normalised cross-correlation of the two derivatives in a
   window around each step; its peak, searched within ``max_lag_s``.
4. Fine lag, per step: the centroid of the meter's bump minus the centroid of the reference's bump
   next to it (at the coarse lag). For averages over an interval, linearly interpolated, the
   bump's centroid is exactly the time of the step whatever the sampling phase, so this is
   unbiased where the cross-correlation's peak, at one sample a second, is not. The offset is the
   median over steps; the spread says how well the steps agree.

A positive offset means the meter's series shows a change later than the reference: subtract it
from the meter's timestamps to align them.

``align_command`` is ``mltelemetry pm align`` (the root command lists it with the meter tools and imports
this module only when it runs).
"""

from __future__ import annotations

import datetime
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Optional

import numpy as np
import typer

from mltelemetry.cliutil import DURATION_UNITS, one_line_errors, parse_duration_s
from mltelemetry.errors import MltelemetryError, UsageError

MIN_CORRELATION = 0.5
"""Below this correlation of the two derivatives around the steps, once aligned, the series do not move together."""


@dataclass(frozen=True)
class Alignment:
    """The result: offset (s; positive: the meter lags), the steps it rests on, their spread (s, standard
    deviation of the per-step estimates), the coarse cross-correlation peak (s) and the correlation of the
    two derivatives around the steps once aligned (-1..1)."""

    offset_s: float
    steps: int
    spread_s: float
    coarse_s: float
    correlation: float
    per_step_s: tuple[float, ...]

    def line(self) -> str:
        direction = "lags" if self.offset_s >= 0 else "leads"
        return (f"the meter's series {direction} the reference by {abs(self.offset_s) * 1000:.0f} ms "
                f"({self.steps} steps, spread {self.spread_s * 1000:.0f} ms, correlation {self.correlation:.2f})")

    def json(self) -> str:
        data = asdict(self)
        data["offset_ms"] = self.offset_s * 1000
        return json.dumps(data)


def _clean(t: np.ndarray, v: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    t, v = np.asarray(t, dtype=float), np.asarray(v, dtype=float)
    keep = np.isfinite(t) & np.isfinite(v)
    t, v = t[keep], v[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    unique = np.append(np.diff(t) > 0, True)
    t, v = t[unique], v[unique]
    if len(t) < 8:
        raise MltelemetryError(f"the {what} series has {len(t)} samples in the range; alignment needs a few steps")
    return t, v


def _noise(v: np.ndarray) -> float:
    """The standard deviation of a series' sample-to-sample noise, from the smallest quarter of its differences:
    a load that steps often (half the differences on a ramp between levels) does not inflate it."""
    return float(np.percentile(np.abs(np.diff(v)), 25) / 0.3186)  # |N(0, σ)|'s 25th percentile is 0.3186 σ


def find_steps(t: np.ndarray, v: np.ndarray, *, threshold: float | None = None) -> list[tuple[float, float]]:
    """Steps of a series as (time, size): runs of consecutive same-sign differences above ``threshold``
    (default: 6 × the noise of the differences, at least 10 % of the series' range), each placed at the
    difference-weighted middle of its intervals."""
    d = np.diff(v)
    middles = (t[1:] + t[:-1]) / 2
    if threshold is None:
        span = float(np.percentile(v, 95) - np.percentile(v, 5))
        threshold = max(6 * _noise(v), 0.1 * span)
    if not threshold > 0:
        return []
    steps: list[tuple[float, float]] = []
    k = 0
    while k < len(d):
        if abs(d[k]) <= threshold:
            k += 1
            continue
        sign, j = np.sign(d[k]), k
        while j + 1 < len(d) and np.sign(d[j + 1]) == sign and abs(d[j + 1]) > threshold / 3:
            j += 1
        size = float(d[k:j + 1].sum())
        steps.append((float((d[k:j + 1] * middles[k:j + 1]).sum() / size), size))
        k = j + 1
    return steps


def estimate_offset(meter_t, meter_v, reference_t, reference_v, *, max_lag_s: float = 3.0, grid_s: float = 0.01,
                    meter_window_s: float | None = None, reference_window_s: float | None = None,
                    min_steps: int = 3) -> Alignment:
    """The offset of the meter's series (times in s, values) against the reference's (see the module docstring).

    ``*_window_s`` is each series' averaging window (default: its median sampling interval).
    """
    mt, mv = _clean(meter_t, meter_v, "meter")
    rt, rv = _clean(reference_t, reference_v, "reference")
    origin = mt[0]
    mt, rt = mt - origin, rt - origin
    m_interval, r_interval = float(np.median(np.diff(mt))), float(np.median(np.diff(rt)))
    mt = mt - (meter_window_s if meter_window_s is not None else m_interval) / 2
    rt = rt - (reference_window_s if reference_window_s is not None else r_interval) / 2
    lo, hi = max(mt[0], rt[0]), min(mt[-1], rt[-1])
    if hi - lo < 4 * max_lag_s:
        raise MltelemetryError(f"the two series overlap for {max(hi - lo, 0):.1f} s only; give a longer range")
    grid = np.arange(lo, hi, grid_s)
    dm = np.diff(np.interp(grid, mt, mv))
    dr = np.diff(np.interp(grid, rt, rv))
    middles = (grid[1:] + grid[:-1]) / 2

    bump = 1.6 * max(m_interval, r_interval)  # half the width of a step's bump in a derivative
    steps = [(s, size) for s, size in find_steps(mt, mv) if lo + bump + max_lag_s < s < hi - bump - max_lag_s]
    times = [s for s, _ in steps]
    isolated = [(s, size) for k, (s, size) in enumerate(steps)
                if all(abs(s - other) > 2 * bump for j, other in enumerate(times) if j != k)]
    if len(isolated) < min_steps:
        raise MltelemetryError(f"found {len(isolated)} clear, isolated step(s) in the meter's power, need {min_steps}: "
                               "give a range where the load changes in steps a few seconds apart")

    lag = round(max_lag_s / grid_s)
    half = round(bump / grid_s)
    total = np.zeros(2 * lag + 1)
    for s, _ in isolated:
        centre = int(np.searchsorted(middles, s))
        window = dm[centre - half:centre + half]
        around = dr[centre - half - lag:centre + half + lag]
        if len(window) != 2 * half or len(around) != 2 * half + 2 * lag:
            continue
        scale = math.sqrt(float((window ** 2).sum()) * float((around ** 2).sum()) / len(around) * len(window))
        if scale > 0:
            # np.correlate's k-th value pairs dm(t) with dr(t + (k - lag) grid); reversed, index j is lag
            # (j - lag) grid: Σ dm(t) dr(t - τ)
            total += np.correlate(around, window, mode="valid")[::-1] / scale
    lags = np.arange(-lag, lag + 1) * grid_s
    peak = int(np.argmax(total))
    if not total[peak] > 0:
        raise MltelemetryError("the reference does not move with the meter's power (no positive correlation)")
    coarse = float(lags[peak])

    r_noise = _noise(rv)
    r_significant = max(4 * r_noise, 0.05 * float(np.percentile(rv, 95) - np.percentile(rv, 5)))

    def per_step(offset: float) -> list[float]:
        found = []
        for s, size in isolated:
            sign = 1.0 if size > 0 else -1.0
            m_sel = (middles > s - bump) & (middles < s + bump)
            r_sel = (middles > s - offset - bump) & (middles < s - offset + bump)
            m_weight = np.clip(dm[m_sel] * sign, 0, None)
            r_weight = np.clip(dr[r_sel] * sign, 0, None)
            if r_weight.sum() <= r_significant or m_weight.sum() <= 0:
                continue  # the reference did not step here
            found.append(float((m_weight * middles[m_sel]).sum() / m_weight.sum()
                               - (r_weight * middles[r_sel]).sum() / r_weight.sum()))
        return found

    estimates, offset = [], coarse
    for _ in range(3):  # centre the reference's windows on the better estimate: no bump cut off at their edges
        estimates = per_step(offset)
        if len(estimates) < min_steps:
            raise MltelemetryError(f"the reference stepped with the meter {len(estimates)} time(s), need {min_steps}")
        offset = float(np.median(estimates))
    shift = round(offset / grid_s)
    correlations = []
    for s, _ in isolated:
        centre = int(np.searchsorted(middles, s))
        a, b = dm[centre - half:centre + half], dr[centre - half - shift:centre + half - shift]
        if len(a) == len(b) == 2 * half and np.any(a) and np.any(b):
            correlations.append(float(np.dot(a, b) / math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))))
    correlation = float(np.mean(correlations)) if correlations else float("nan")
    if abs(offset) > max_lag_s:
        raise MltelemetryError(f"the reference does not move with the meter's power within ±{max_lag_s:g} s "
                               f"(the steps paired up {offset:+.2f} s apart); raise --max-lag if that is real")
    if not correlation >= MIN_CORRELATION:
        raise MltelemetryError(f"the reference does not move with the meter's power (correlation {correlation:.2f} "
                               f"around its steps once aligned, below {MIN_CORRELATION})")
    return Alignment(offset, len(estimates), float(np.std(estimates)), coarse, correlation, tuple(estimates))


def _one_series(frame, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) and values of the single series in a source's query result; errors when none or several."""
    if frame.empty:
        raise MltelemetryError(f"no samples of {what} in the range")
    label_columns = [c for c in frame.columns if c not in ("ts_ns", "value")]
    groups = frame.groupby(label_columns, sort=True) if label_columns else [((), frame)]
    series = list(groups)
    if len(series) > 1:
        names = [", ".join(f"{k}={v}" for k, v in zip(label_columns, key if isinstance(key, tuple) else (key,)))
                 for key, _ in series[:4]]
        raise MltelemetryError(f"{len(series)} series of {what} match ({'; '.join(names)}...); "
                               "narrow them with labels")
    data = series[0][1]
    return data["ts_ns"].to_numpy() / 1e9, data["value"].to_numpy(dtype=float)


def align_from_source(source, *, meter: str | None, reference: str, reference_labels: dict[str, str],
                      host: str | None = None, start_ns: int | None = None, end_ns: int | None = None,
                      **options) -> tuple[Alignment, str]:
    """Read the meter's ``pm_power_watts`` and the reference series from a source (``analysis.sources``) and
    align them; returns the alignment and the meter's name."""
    from mltelemetry import schema

    host_labels = {"host": host} if host else {}
    if meter is None:
        meters = sorted({labels.get("meter", "") for labels in _series_labels(source, schema.PM_POWER, host_labels)})
        if len(meters) != 1:
            raise MltelemetryError(f"give --meter: the source has power series of {len(meters)} meters "
                                   f"({', '.join(meters) or 'none'})")
        meter = meters[0]
    meter_frame = source.query(schema.PM_POWER, {**host_labels, "meter": meter}, start_ns, end_ns)
    meter_t, meter_v = _one_series(meter_frame, f"{schema.PM_POWER}{{meter={meter!r}}}")
    name = reference if reference.startswith(schema.PREFIX) else schema.PREFIX + reference
    reference_frame = source.query(name, {**host_labels, **reference_labels}, start_ns, end_ns)
    reference_t, reference_v = _one_series(reference_frame, name)
    return estimate_offset(meter_t, meter_v, reference_t, reference_v, **options), meter


def _series_labels(source, metric: str, labels: dict[str, str]) -> list[dict[str, str]]:
    frame = source.query(metric, labels)
    if frame.empty:
        return []
    columns = [c for c in frame.columns if c not in ("ts_ns", "value")]
    return [dict(zip(columns, row)) for row in frame[columns].drop_duplicates().itertuples(index=False)]


# --- mltelemetry pm align ----------------------------------------------------------------------------
def _parse_time_ns(text: str | None, what: str) -> int | None:
    """ISO 8601 (UTC unless it says otherwise) or seconds since the epoch, as UTC ns."""
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise UsageError(f"{what} wants a finite time, not {text!r}")
        return round(seconds * 1e9)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} wants an ISO 8601 time or seconds since the epoch, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return round(moment.timestamp() * 1e9)


@one_line_errors
def align_command(
    source: Annotated[str, typer.Option(
        help="Embedded store file, a Prometheus-compatible API URL or influxdb+http://HOST:8086/DATABASE.")]
        = "mltelemetry.db",
    meter: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="The meter label of the power series (default: the only meter in the source).")] = None,
    reference: Annotated[str, typer.Option(
        help="Metric that should move with the meter's power: host_cpu_total_utilization_ratio, gpu_power_watts, "
             "...")] = "host_cpu_total_utilization_ratio",
    label: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--label", help="K=V label of the reference series (repeatable).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Only series of this host label.")] = None,  # noqa: UP045
    start: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Start of the range: ISO 8601 (UTC by default) or epoch seconds.")] = None,
    end: Annotated[Optional[str], typer.Option(help="End of the range (default: now).")] = None,  # noqa: UP045
    last: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help=f"The range is this long, up to --end: 90s, 15m, 2h ({DURATION_UNITS}).")] = None,
    max_lag: Annotated[float, typer.Option(min=0.1, help="Largest offset searched, in seconds.")] = 3.0,
    meter_window: Annotated[Optional[float], typer.Option(  # noqa: UP045
        min=0, help="Seconds each meter value averages (default: its sampling interval).")] = None,
    reference_window: Annotated[Optional[float], typer.Option(  # noqa: UP045
        min=0, help="Seconds each reference value averages (default: its sampling interval).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Estimate how far the meter's power series lags a series that moves with it, in milliseconds."""
    from mltelemetry.analysis.sources import open_source

    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--label wants K=V, not {item!r}")
        labels[key] = value
    if not labels and reference.removeprefix("mltelemetry_") == "host_cpu_utilization_ratio":
        labels = {"cpu": "total"}  # the whole machine as stored before it had its own series name
    for name, value in (("--max-lag", max_lag), ("--meter-window", meter_window),
                        ("--reference-window", reference_window)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{name} wants a finite number of seconds, not {value}")
    end_ns = _parse_time_ns(end, "--end")
    start_ns = _parse_time_ns(start, "--start")
    if last is not None:
        if start_ns is not None:
            raise UsageError("give --start or --last, not both")
        end_ns = end_ns if end_ns is not None else time.time_ns()
        start_ns = end_ns - round(parse_duration_s(last, "--last") * 1e9)
    opened = open_source(source)
    try:
        result, meter_name = align_from_source(opened, meter=meter, reference=reference, reference_labels=labels,
                                               host=host, start_ns=start_ns, end_ns=end_ns, max_lag_s=max_lag,
                                               meter_window_s=meter_window, reference_window_s=reference_window)
    finally:
        opened.close()
    typer.echo(result.json() if as_json else f"meter {meter_name}: {result.line()}")
