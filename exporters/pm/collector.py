"""Power-meter collector: turns one meter's readings into the schema's ``pm_*`` samples.

Also the contract every meter driver fulfils: ``read()`` returns a :class:`Reading` in SI
units, raises :class:`InvalidReading` for a reply that must not become a number and
:class:`MeterDisconnected` when the port is gone; ``close()`` releases the port.

Energy is integrated here, at the source. A meter's value is the average power over its
last update interval, so each valid reading adds ``power × seconds since the previous
reading's tick`` to a monotonic joule counter. Rules for time without a valid reading:

- Invalid readings (garbage, partial, NAN, INF, over-range) are counted and dropped. If the
  next valid reading comes at most ``bridge_limit_s`` after the last valid one, the whole
  stretch is integrated with that reading's power (the bridge).
- A longer stretch, and any time the meter was disconnected, is not integrated: it is added
  to ``pm_gap_seconds_total``, which grows tick by tick while the outage lasts. The first
  valid reading after a gap or a reconnect only restarts integration.

So, once the first valid reading arrived, integrated seconds + gap seconds = elapsed time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Sample

log = logging.getLogger(__name__)

DEFAULT_BRIDGE_LIMIT_S = 5.0


class MeterError(MltelemetryError):
    """A power meter could not be used (base class of the driver errors)."""


class MeterDisconnected(MeterError):
    """The meter's port is gone or failed (unplugged, EIO, cannot be opened)."""


class InvalidReading(MeterError):
    """A reply that must not become a number: garbage, partial, silent or of the wrong shape."""


@dataclass(frozen=True)
class Reading:
    """One reading, each item averaged over the meter's update interval; None where the meter gave
    no valid value (NAN, INF, over-range)."""

    power_w: float | None
    voltage_v: float | None
    current_a: float | None


class Driver(Protocol):
    def read(self) -> Reading: ...

    def close(self) -> None: ...


class PmCollector:
    """Reads one meter per tick; reconnects through ``driver_factory`` whenever the port is gone.

    ``clock`` is a monotonic clock in seconds (injectable for tests); it times the integration.
    """

    name = "pm"

    def __init__(self, driver_factory: Callable[[], Driver], host: str, meter: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 bridge_limit_s: float = DEFAULT_BRIDGE_LIMIT_S) -> None:
        self.driver_factory = driver_factory
        self.labels = {"host": host, "meter": meter}
        self.clock = clock
        self.bridge_limit_s = bridge_limit_s
        self.driver: Driver | None = None
        self.energy_j = 0.0
        self.samples_total = 0
        self.invalid_total = 0
        self.gap_s = 0.0
        self.integrated_s = 0.0
        self._since: float | None = None  # clock time up to which time is integrated or counted as gap
        self._can_bridge = False  # whether the next valid reading may integrate back to _since
        self._warned = False

    def sample(self, ts_ns: int) -> list[Sample]:
        reading = self._read()
        now = self.clock()
        if reading is None or reading.power_w is None:
            self._no_power(now)
        else:
            self._integrate(now, reading.power_w)

        def s(metric: str, value: float) -> Sample:
            return Sample(metric, self.labels, float(value), ts_ns)

        samples = []
        if reading is not None:
            samples += [s(metric, value) for metric, value in (
                (schema.PM_POWER, reading.power_w), (schema.PM_VOLTAGE, reading.voltage_v),
                (schema.PM_CURRENT, reading.current_a)) if value is not None]
        return samples + [
            s(schema.PM_ENERGY, self.energy_j),
            s(schema.PM_SAMPLES, self.samples_total),
            s(schema.PM_INVALID, self.invalid_total),
            s(schema.PM_GAP, self.gap_s),
            s(schema.PM_CONNECTED, self.driver is not None),
        ]

    def _read(self) -> Reading | None:
        """This tick's reading; None when it was invalid or the meter is not connected."""
        try:
            if self.driver is None:
                self.driver = self.driver_factory()
                log.info("power meter %s connected", self.labels["meter"])
                self._warned = False
            reading = self.driver.read()
        except InvalidReading as e:
            self.invalid_total += 1
            log.debug("invalid reading dropped: %s", e)
            return None
        except MeterError as e:
            if not self._warned:  # say it once, then retry quietly every tick
                log.warning("power meter %s not connected (%s); retrying every tick", self.labels["meter"], e)
                self._warned = True
            self.close()
            return None
        if reading.power_w is None:
            self.invalid_total += 1
        else:
            self.samples_total += 1
        return reading

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
