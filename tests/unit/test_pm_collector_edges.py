"""Edges of the PM collector (exporters/pm/collector.py) that mutation testing found unchecked (bench/mutation.md).

On a scripted clock, one tick a second, as tests/test_pm_exporter.py drives it.
"""

import logging

import pytest
from test_pm_exporter import IdentifiedDriver, ScriptedDriver, scripted

from mltelemetry import schema
from mltelemetry.exporters.pm.collector import MeterDisconnected, MeterIdentity, MeterReading, PmCollector


def test_power_that_is_no_measurement_is_warned_about_once_a_minute_and_counted_every_time(caplog):
    # t = 0: 100 W; t = 1 .. 130: −5 W, every one refused. Warnings at t = 1, 61 (60 s later: due), 121.
    collector, tick = scripted([100] + [-5] * 130)
    caplog.set_level(logging.WARNING)
    for _ in range(61):  # t = 0 .. 60
        values = tick()
    assert caplog.text.count("is no measurement") == 1  # t = 1 only: 59 s later is not yet a minute
    tick()  # t = 61: exactly a minute after the first
    assert caplog.text.count("is no measurement") == 2
    for _ in range(69):  # t = 62 .. 130
        values = tick()
    assert caplog.text.count("is no measurement") == 3  # and t = 121
    assert collector.implausible_total == 130 and values[schema.PM_INVALID] == 130


def test_a_meter_counter_that_stands_still_is_no_restart(caplog):
    # an idle meter's integrator can show the same joules twice; only a lower reading is read as a restart
    collector, tick = scripted([MeterReading(0.0, 230.0, 0.0, meter_energy_j=500.0),
                                MeterReading(0.0, 230.0, 0.0, meter_energy_j=500.0),
                                MeterReading(10.0, 230.0, 0.04, meter_energy_j=480.0)])
    caplog.set_level(logging.INFO)
    values = [tick()[schema.PM_METER_ENERGY] for _ in range(3)]
    assert values == [500.0, 500.0, 980.0]  # 500 + 480 after the restart
    assert caplog.text.count("went back") == 1  # 500 J -> 480 J, not 500 J -> 500 J
    assert "(500 J -> 480 J)" in caplog.text


class McpScripted(ScriptedDriver):
    name = "mcp39f511"  # the MCP39F511N board: 15 A at up to 265 V, 5 kW the most it can measure


class PtdScripted(ScriptedDriver):
    name = "ptd"  # PTDaemon drives analyzers of every size: the 100 kW default


@pytest.mark.parametrize(("driver_class", "top_w"), [(McpScripted, 5000.0), (PtdScripted, 100_000.0)])
def test_a_power_up_to_the_meters_range_is_a_measurement_and_a_hair_above_it_is_not(driver_class, top_w):
    collector, tick = scripted([top_w, top_w + 0.5, top_w], driver_class=driver_class)
    values = [tick() for _ in range(3)]
    assert [v.get(schema.PM_POWER) for v in values] == [top_w, None, top_w]
    assert collector.implausible_total == 1
    assert values[-1][schema.PM_ENERGY] == 2 * top_w  # t 0..2 bridged by the reading at t = 2: top_w × 2 s


def test_the_sampling_rate_is_0_not_absent_once_a_meter_that_gave_two_readings_falls_silent():
    # valid readings at t = 0 and 1, then only invalid replies
    collector, tick = scripted([100, 100] + [None] * 59)
    values = [tick() for _ in range(61)]
    assert values[0].get(schema.PM_SAMPLING_RATE) is None  # one reading: no rate yet
    assert values[1][schema.PM_SAMPLING_RATE] == 1.0  # (2 − 1) readings / 1 s since the oldest
    assert values[59][schema.PM_SAMPLING_RATE] == 1 / 59  # (2 − 1) / 59 s
    assert values[60][schema.PM_SAMPLING_RATE] == 0.0  # t = 60: the reading at t = 0 left the 60-s window, one is left


def test_each_outage_is_warned_about_once_and_a_different_meter_on_the_port_is_said(caplog):
    now = [0.0]
    drivers = iter([IdentifiedDriver([100.0, MeterDisconnected("cable pulled")]),
                    IdentifiedDriver([100.0, MeterDisconnected("cable pulled")]),
                    OtherMeter([100.0])])
    connects = iter([True, False, False, True, False, True])

    def factory():
        if not next(connects):
            raise MeterDisconnected("port gone")
        return next(drivers)

    collector = PmCollector(factory, host="sut", meter="m", clock=lambda: now[0])
    with caplog.at_level(logging.INFO):
        for _ in range(8):
            collector.sample(0)
            now[0] += 1.0
    # t 0: connected (S1); 1: lost, 2 and 3: still gone (one warning); 4: back (S1 again); 5: lost (a second
    # warning: the outage is a new one); 6: back, now the meter S2 on the port
    assert caplog.text.count("not connected") == 2
    assert caplog.text.count("is now a different meter") == 1
    assert "power meter m is now a different meter: M1 (serial S2" in caplog.text
    assert collector.disconnects_total == 2


class OtherMeter(ScriptedDriver):
    name = "scripted"
    identity = MeterIdentity(model="M1", serial="S2", firmware="F1", raw="ACME,M1,S2,F1")
