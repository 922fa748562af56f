"""Power-meter collector: turns one meter's readings into the schema's ``pm_*`` samples.

The driver contract (``MeterReading``, ``Driver``, the errors) lives in ``meter.py`` and is
re-exported here.

Energy is integrated here, at the source. A meter's value is the average power over its
last update interval, so each valid reading adds ``power × seconds since the previous
reading's tick`` to a monotonic joule counter. Rules for time without a valid reading:

- Invalid readings (garbage, partial, NAN, INF, over-range) are counted and dropped, and so is
  a power that is not physics: negative, not finite, or above what the driver's meter can
  measure at all (its plug-in's ``max_power_w``). If the
  next valid reading comes at most ``bridge_limit_s`` after the last valid one, the whole
  stretch is integrated with that reading's power (the bridge).
- A longer stretch, and any time the meter was disconnected, is not integrated: it is added
  to ``pm_gap_seconds_total``, which grows tick by tick while the outage lasts. The first
  valid reading after a gap or a reconnect only restarts integration.

So, once the first valid reading arrived, integrated seconds + gap seconds = elapsed time.

Beside that, per tick: the meter's own energy counter (``pm_meter_energy_joules_total``, kept
monotonic across the meter's restarts), the reported uncertainty, the achieved sampling rate
(valid readings per second over the last minute), how often the meter was lost and, once the
meter identified itself,
``pm_meter_info`` (driver, model, serial, firmware), logged once per connection.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable

from mltelemetry import schema
from mltelemetry.exporters.counters import MonotonicCounter
from mltelemetry.exporters.pm import registry
from mltelemetry.exporters.pm.meter import (  # noqa: F401 (re-exported: the driver contract)
    Driver,
    InvalidReading,
    MeterDisconnected,
    MeterError,
    MeterIdentity,
    MeterReading,
)
from mltelemetry.schema import Sample

log = logging.getLogger(__name__)

DEFAULT_BRIDGE_LIMIT_S = 5.0
RATE_WINDOW_S = 60.0


class PmCollector:
    """Reads one meter per tick; reconnects through ``driver_factory`` whenever the port is gone.

    ``clock`` is a monotonic clock in seconds (injectable for tests); it times the integration.
    ``wall_ns`` is the wall clock (UTC ns) that stamps each tick's samples: the moment the
    reading arrived, which for a meter synchronised to its update event is the end of the
    interval the reading averages (the runtime's tick start would be up to one interval early).
    """

    name = "pm"

    def __init__(self, driver_factory: Callable[[], Driver], host: str, meter: str, *,
                 clock: Callable[[], float] = time.monotonic, wall_ns: Callable[[], int] | None = None,
                 bridge_limit_s: float = DEFAULT_BRIDGE_LIMIT_S, rate_window_s: float = RATE_WINDOW_S,
                 max_power_w: float | None = None) -> None:
        self.driver_factory = driver_factory
        self.labels = {"host": host, "meter": meter}
        self.clock = clock
        self.wall_ns = wall_ns
        self.bridge_limit_s = bridge_limit_s
        self.rate_window_s = rate_window_s
        self.max_power_w = max_power_w  # None: the range its plug-in declares for the driver's name
        self.implausible_total = 0  # readings whose power was refused as not physics (also in invalid_total)
        self._implausible_warned_at: float | None = None
        self.driver: Driver | None = None
        self.energy_j = 0.0
        self.samples_total = 0
        self.invalid_total = 0
        self.gap_s = 0.0
        self.integrated_s = 0.0
        self.disconnects_total = 0
        self.info_labels: dict[str, str] | None = None  # pm_meter_info's labels, once a meter identified itself
        self._since: float | None = None  # clock time up to which time is integrated or counted as gap
        self._can_bridge = False  # whether the next valid reading may integrate back to _since
        self._warned = False
        self._valid_times: deque[float] = deque()  # clock times of the valid readings of the last rate window
        self._meter_counter = MonotonicCounter()  # the meter's own counter, across its integration runs

    def sample(self, ts_ns: int) -> list[Sample]:
        reading = self._read()
        now = self.clock()
        if self.wall_ns is not None:
            ts_ns = self.wall_ns()
        if reading is None or reading.power_w is None:
            self._no_power(now)
        else:
            self._integrate(now, reading.power_w)
            self._valid_times.append(now)
        while self._valid_times and self._valid_times[0] <= now - self.rate_window_s:
            self._valid_times.popleft()

        def s(metric: str, value: float, labels: dict[str, str] = self.labels) -> Sample:
            return Sample(metric, labels, float(value), ts_ns)

        samples = []
        if reading is not None:
            samples += [s(metric, value) for metric, value in (
                (schema.PM_POWER, reading.power_w), (schema.PM_VOLTAGE, reading.voltage_v),
                (schema.PM_CURRENT, reading.current_a), (schema.PM_UNCERTAINTY, reading.uncertainty))
                if value is not None]
            if reading.meter_energy_j is not None:
                samples.append(s(schema.PM_METER_ENERGY, self._meter_energy(reading)))
        rate = self.sampling_rate_hz(now)
        if rate is not None:
            samples.append(s(schema.PM_SAMPLING_RATE, rate))
        if self.info_labels is not None and self.driver is not None:
            samples.append(s(schema.PM_INFO, 1, self.info_labels))
        return samples + [
            s(schema.PM_ENERGY, self.energy_j),
            s(schema.PM_SAMPLES, self.samples_total),
            s(schema.PM_INVALID, self.invalid_total),
            s(schema.PM_GAP, self.gap_s),
            s(schema.PM_CONNECTED, self.driver is not None),
            s(schema.PM_DISCONNECTS, self.disconnects_total),
        ]

    def sampling_rate_hz(self, now: float) -> float | None:
        """Valid readings per second over the last rate window: (n - 1) / (now - oldest); None before
        two valid readings ever arrived, 0 once the window holds fewer than two."""
        times = self._valid_times
        if len(times) < 2:
            return None if self.samples_total < 2 else 0.0
        return (len(times) - 1) / max(now - times[0], 1e-9)

    def _meter_energy(self, reading: MeterReading) -> float:
        """The meter's counter made monotonic across its restarts (a new integration run, a reset): one
        the driver flags, or any decrease (a reconnected meter counting from a lower value), as a
        Prometheus counter reset is read."""
        assert reading.meter_energy_j is not None
        last = self._meter_counter.last
        if last is not None and reading.meter_energy_j < last and not reading.meter_restarted:
            log.info("power meter %s: its energy counter went back (%g J -> %g J); counted as a restart",
                     self.labels["meter"], last, reading.meter_energy_j)
        return self._meter_counter.add(reading.meter_energy_j, reading.meter_restarted)

    def _connect(self) -> Driver:
        driver = self.driver_factory()
        identity = getattr(driver, "identity", None)
        name = getattr(driver, "name", "")
        if identity is not None:
            log.info("power meter %s connected: %s via %s", self.labels["meter"], identity.line(), name)
            info = {**self.labels, "driver": name, "model": identity.model, "serial": identity.serial,
                    "firmware": identity.firmware}
            if self.info_labels is not None and info != self.info_labels:
                log.warning("power meter %s is now a different meter: %s", self.labels["meter"], identity.line())
            self.info_labels = info
        else:
            log.info("power meter %s connected", self.labels["meter"])
        return driver

    def _read(self) -> MeterReading | None:
        """This tick's reading; None when it was invalid or the meter is not connected."""
        try:
            if self.driver is None:
                self.driver = self._connect()
                self._warned = False
            reading = self.driver.read()
        except InvalidReading as e:
            self.invalid_total += e.samples
            log.debug("invalid reading dropped: %s", e)
            return None
        except MeterError as e:
            if self.driver is not None:  # it was connected: the port or connection just went away
                self.disconnects_total += 1
            if not self._warned:  # say it once, then retry quietly every tick
                log.warning("power meter %s not connected (%s); retrying every tick", self.labels["meter"], e)
                self._warned = True
            self.close()
            return None
        reading = self._plausible(reading)
        self.invalid_total += reading.dropped
        if reading.power_w is None:
            self.invalid_total += 1
        else:
            self.samples_total += 1
        return reading

    def _plausible(self, reading: MeterReading) -> MeterReading:
        """``reading`` with every value that cannot be a measurement (negative, not finite, a power beyond the
        meter's range) set to None, so it is counted and never stored; a refused power makes the reading invalid."""
        limit = self.max_power_w or registry.max_power_w(getattr(self.driver, "name", ""))

        def measured(value: float | None, top: float = math.inf) -> float | None:
            return value if value is not None and math.isfinite(value) and 0 <= value <= top else None

        power = measured(reading.power_w, limit)
        if reading.power_w is not None and power is None:
            self.implausible_total += 1
            now = self.clock()
            if self._implausible_warned_at is None or now - self._implausible_warned_at >= 60:  # once a minute
                self._implausible_warned_at = now
                log.warning("power meter %s: %g W is no measurement (want 0 to %g W); such readings are counted as "
                            "invalid and dropped, %d so far", self.labels["meter"], reading.power_w, limit,
                            self.implausible_total)
        return dataclasses.replace(
            reading, power_w=power, voltage_v=measured(reading.voltage_v), current_a=measured(reading.current_a),
            meter_energy_j=measured(reading.meter_energy_j), uncertainty=measured(reading.uncertainty))

    def _integrate(self, now: float, power_w: float) -> None:
        if self._since is not None:
            dt = now - self._since
            if self._can_bridge and dt <= self.bridge_limit_s:
                self.energy_j += power_w * dt
                self.integrated_s += dt
            else:
                self.gap_s += dt
        self._since, self._can_bridge = now, True

    def _no_power(self, now: float) -> None:
        if self._since is None:
            return  # no valid reading yet: nothing to integrate or to miss
        if self.driver is None or not self._can_bridge or now - self._since > self.bridge_limit_s:
            self.gap_s += now - self._since
            self._since, self._can_bridge = now, False

    def close(self) -> None:
        if self.driver is not None:
            driver, self.driver = self.driver, None
            driver.close()
