"""The PM exporter (collector + WT300 driver + runtime) against the emulator on a real pty, and the
collector's accounting on scripted time.

Integration tests tick the runtime's ``Exporter`` on absolute deadlines of real time. The
meter's value is the average over its last completed update, so the energy counter lags the
truth by the sampling phase; each test therefore compares the counter's rise between two
ticks with the profile's exact integral between the ends of the updates those two ticks read
(the emulator records which update each reply carried). Tick 0 connects (and starts the
meter's integrator); from then on synchronised reads return each update exactly once, at the
moment it finishes. (The 20 s energy test of every driver is in test_pm_energy.py.)
"""

from __future__ import annotations

import logging
import math

from mltelemetry import schema
from mltelemetry.exporters.pm.collector import (
    InvalidReading,
    MeterDisconnected,
    MeterIdentity,
    MeterReading,
    PmCollector,
)


# --- the collector's accounting on scripted time -------------------------------------------
class ScriptedDriver:
    """Hands out scripted readings: a MeterReading, a power in W, None (invalid reply) or an exception."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.closed = False

    def read(self) -> MeterReading:
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        if item is None:
            raise InvalidReading("scripted garbage")
        return item if isinstance(item, MeterReading) else MeterReading(float(item), 230.0, item / 230.0)

    def close(self) -> None:
        self.closed = True


def scripted(script: list, *, connected: list[bool] | None = None, driver_class: type | None = None):
    """A collector on a scripted clock (one tick per second) whose meter (a ``driver_class``) plays ``script``."""
    now = [0.0]
    driver = (driver_class or ScriptedDriver)(script)
    connected = list(connected) if connected else None

    def factory():
        if connected is not None and not connected.pop(0):
            raise MeterDisconnected("scripted: port gone")
        driver.closed = False
        return driver

    collector = PmCollector(factory, host="sut", meter="m", clock=lambda: now[0])

    def tick() -> dict[str, float]:
        values = {s.metric: s.value for s in collector.sample(int(now[0] * 1e9))}
        now[0] += 1.0
        return values

    return collector, tick


def test_valid_readings_integrate_power_times_time_since_the_previous_tick():
    collector, tick = scripted([100, 100, 300, 50])
    values = [tick() for _ in range(4)]
    assert [v[schema.PM_ENERGY] for v in values] == [0, 100, 400, 450]
    assert values[-1][schema.PM_SAMPLES] == 4 and values[-1][schema.PM_GAP] == 0


def test_a_short_invalid_stretch_is_bridged_by_the_next_reading():
    collector, tick = scripted([100, None, None, 200])
    values = [tick() for _ in range(4)]
    assert values[-1][schema.PM_ENERGY] == 200 * 3
    assert values[-1][schema.PM_INVALID] == 2 and values[-1][schema.PM_GAP] == 0
    assert schema.PM_POWER not in values[1]


def test_a_stretch_of_exactly_the_bridge_limit_is_still_bridged():
    collector, tick = scripted([100] + [None] * 4 + [200])
    values = [tick() for _ in range(6)]
    # Valid at t = 0 and t = 5: 5 s = DEFAULT_BRIDGE_LIMIT_S ("at most"), so bridged with the new reading's
    # power: 200 W × 5 s = 1000 J, no gap.
    assert collector.bridge_limit_s == 5.0
    assert values[-1][schema.PM_ENERGY] == 200 * 5 and values[-1][schema.PM_GAP] == 0
    assert collector.integrated_s == 5


def test_a_long_invalid_stretch_is_a_gap():
    collector, tick = scripted([100] + [None] * 7 + [200, 200])
    values = [tick() for _ in range(10)]
    # Waiting ends at t = 6 (more than 5 s since the last valid reading); from then on the
    # gap grows every tick, and the reading at t = 8 only restarts integration.
    assert [v[schema.PM_GAP] for v in values] == [0, 0, 0, 0, 0, 0, 6, 7, 8, 8]
    assert values[-1][schema.PM_ENERGY] == 200
    assert collector.integrated_s + collector.gap_s == 9


def test_an_invalid_power_with_valid_voltage_publishes_the_voltage_only():
    collector, tick = scripted([100, MeterReading(None, 231.0, None), 100])
    values = [tick() for _ in range(3)]
    assert values[1][schema.PM_VOLTAGE] == 231.0 and schema.PM_POWER not in values[1]
    assert values[-1][schema.PM_INVALID] == 1 and values[-1][schema.PM_SAMPLES] == 2


def test_disconnected_time_is_a_gap_and_the_collector_reconnects():
    collector, tick = scripted([100, 100, MeterDisconnected("EIO"), 100, 100],
                               connected=[True, False, False, True])
    values = [tick() for _ in range(6)]
    assert [v[schema.PM_CONNECTED] for v in values] == [1, 1, 0, 0, 0, 1]
    # Integrated [0, 1]; disconnected from the read at t = 2 until the reading at t = 5.
    assert values[-1][schema.PM_ENERGY] == 100
    assert values[-1][schema.PM_GAP] == 4
    assert values[-1][schema.PM_SAMPLES] == 3
    assert values[-1][schema.PM_DISCONNECTS] == 1


def test_a_meter_absent_at_start_is_retried_without_a_gap():
    collector, tick = scripted([120, 120], connected=[False, False, True])
    values = [tick() for _ in range(4)]
    assert [v[schema.PM_CONNECTED] for v in values] == [0, 0, 1, 1]
    assert values[-1][schema.PM_ENERGY] == 120 and values[-1][schema.PM_GAP] == 0
    assert values[-1][schema.PM_DISCONNECTS] == 0  # never connected: nothing lost


class IdentifiedDriver(ScriptedDriver):
    name = "scripted"
    identity = MeterIdentity(model="M1", serial="S1", firmware="F1", raw="ACME,M1,S1,F1")


def test_health_metrics_and_identity_on_scripted_time(caplog):
    now = [0.0]
    script = [100.0] * 5 + [MeterDisconnected("gone")] + [100.0] * 2
    driver = IdentifiedDriver(script)
    connects = iter([True, False, False, True])  # connected at tick 0; lost at 5; back at 8

    def factory():
        if not next(connects):
            raise MeterDisconnected("still gone")
        return driver

    collector = PmCollector(factory, host="sut", meter="m", clock=lambda: now[0], wall_ns=lambda: int(now[0] * 1e9) + 7,
                            rate_window_s=3.0)
    ticks = []
    with caplog.at_level(logging.INFO):
        for _ in range(10):
            samples = collector.sample(0)
            ticks.append({s.metric: s for s in samples})
            now[0] += 1.0
    assert "power meter m connected: M1 (serial S1, firmware F1) via scripted" in caplog.text
    info = ticks[0][schema.PM_INFO]
    assert info.value == 1 and info.labels == {"host": "sut", "meter": "m", "driver": "scripted", "model": "M1",
                                               "serial": "S1", "firmware": "F1"}
    assert all(s.ts_ns == int(k * 1e9) + 7 for k, t in enumerate(ticks) for s in t.values())  # stamped when read
    rates = [t[schema.PM_SAMPLING_RATE].value if schema.PM_SAMPLING_RATE in t else None for t in ticks]
    # one valid reading a second; the outage (ticks 5 to 7) empties the 3 s window; back at 1/s after two readings
    assert rates == [None, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 1.0]
    assert [schema.PM_INFO in t for t in ticks] == [True] * 5 + [False] * 3 + [True] * 2  # not while disconnected


def test_meter_energy_is_kept_monotonic_across_meter_restarts():
    collector, tick = scripted([
        MeterReading(100.0, 230.0, 0.4, meter_energy_j=5000.0, meter_restarted=True),  # a run found in progress
        MeterReading(100.0, 230.0, 0.4, meter_energy_j=5100.0),
        MeterReading(100.0, 230.0, 0.4, meter_energy_j=30.0, meter_restarted=True),  # reset: starts again
        MeterReading(100.0, 230.0, 0.4, meter_energy_j=130.0),
        MeterReading(100.0, 230.0, 0.4, meter_energy_j=110.0),  # back without the flag: a restart all the same
    ])
    values = [tick()[schema.PM_METER_ENERGY] for _ in range(5)]
    assert values == [5000.0, 5100.0, 5130.0, 5230.0, 5340.0]


def test_meter_energy_stays_monotonic_when_a_reconnected_meter_counts_lower():
    collector, tick = scripted([
        MeterReading(100.0, 230.0, 0.4, meter_energy_j=1000.0),
        MeterDisconnected("scripted: cable pulled"),
        MeterReading(100.0, 230.0, 0.4, meter_energy_j=50.0),  # a reconnected meter that lost its count
        MeterReading(100.0, 230.0, 0.4, meter_energy_j=150.0),
    ])
    values = [tick().get(schema.PM_METER_ENERGY) for _ in range(4)]
    assert values == [1000.0, None, 1050.0, 1150.0]


def test_uncertainty_and_dropped_samples():
    collector, tick = scripted([MeterReading(100.0, 230.0, 0.4, uncertainty=0.002, dropped=2), 100.0])
    first, second = tick(), tick()
    assert first[schema.PM_UNCERTAINTY] == 0.002 and schema.PM_UNCERTAINTY not in second
    assert first[schema.PM_INVALID] == 2 and first[schema.PM_SAMPLES] == 1


class Wt300Scripted(ScriptedDriver):
    name = "wt300"  # a WT310 cannot measure more than 840 V x 28 A = 23.5 kW


def test_power_that_is_not_physics_is_counted_as_invalid_and_never_integrated_or_published(caplog):
    # main: 1e308 W was integrated, so the energy counter overflowed to infinity (and the store dropped it
    # without a word from then on); negative and beyond-range power were published and integrated as load.
    collector, tick = scripted([100, 1e308, 1e308, 100, -5, 30_000, MeterReading(100.0, math.inf, -1.0), 100],
                               driver_class=Wt300Scripted)
    values = [tick() for _ in range(8)]
    # valid readings at t = 0, 3, 6, 7; each refused stretch is short, so it is bridged by the next one:
    # 100 W x 3 s (t 0..3) + 100 W x 3 s (t 3..6) + 100 W x 1 s (t 6..7) = 700 J
    assert values[-1][schema.PM_ENERGY] == 700.0
    assert values[-1][schema.PM_INVALID] == 4 and values[-1][schema.PM_SAMPLES] == 4
    assert collector.implausible_total == 4
    assert [schema.PM_POWER in v for v in values] == [True, False, False, True, False, False, True, True]
    assert schema.PM_VOLTAGE not in values[6] and schema.PM_CURRENT not in values[6]  # INF V and -1 A
    assert all(math.isfinite(value) for v in values for value in v.values())
    assert caplog.text.count("is no measurement") == 1  # once a minute at most
    assert "1e+308 W is no measurement (want 0 to 24000 W)" in caplog.text
