"""Edges of the PM collector (exporters/pm/collector.py) that mutation testing found unchecked (bench/mutation.md).

On a scripted clock, one tick a second, as tests/test_pm_exporter.py drives it.
"""

import logging

from test_pm_exporter import scripted

from mltelemetry import schema
from mltelemetry.exporters.pm.collector import Reading


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
    collector, tick = scripted([Reading(0.0, 230.0, 0.0, meter_energy_j=500.0),
                                Reading(0.0, 230.0, 0.0, meter_energy_j=500.0),
                                Reading(10.0, 230.0, 0.04, meter_energy_j=480.0)])
    caplog.set_level(logging.INFO)
    values = [tick()[schema.PM_METER_ENERGY] for _ in range(3)]
    assert values == [500.0, 500.0, 980.0]  # 500 + 480 after the restart
    assert caplog.text.count("went back") == 1  # 500 J -> 480 J, not 500 J -> 500 J
    assert "(500 J -> 480 J)" in caplog.text
