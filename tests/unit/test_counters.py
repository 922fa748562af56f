"""The one monotonic counter the host (RAPL), GPU (NVML) and power-meter collectors share."""

from __future__ import annotations

from mltelemetry.exporters.counters import MonotonicCounter


def test_a_growing_counter_is_its_own_total_from_the_first_reading():
    counter = MonotonicCounter()
    assert counter.total is None
    assert [counter.add(r) for r in (500.0, 500.0, 750.5)] == [500.0, 500.0, 750.5]
    assert counter.total == 750.5 and counter.restarts == counter.wraps == 0


def test_a_counter_that_goes_back_restarted_from_zero():
    counter = MonotonicCounter()
    # 100 -> 400 (+300), restart: 50 counted from zero (+50), -> 80 (+30): 100 + 300 + 50 + 30 = 480
    assert [counter.add(r) for r in (100, 400, 50, 80)] == [100, 400, 450, 480]
    assert counter.restarts == 1 and counter.wraps == 0


def test_a_restart_the_source_reports_counts_from_zero_even_when_the_value_went_up():
    counter = MonotonicCounter()
    counter.add(10.0)
    # the meter began a new integration run that already holds 25 J: 10 + 25 = 35, not 10 + (25 - 10)
    assert counter.add(25.0, restarted=True) == 35.0
    assert counter.restarts == 1


def test_a_counter_with_a_range_wraps_past_it():
    counter = MonotonicCounter(wrap_at=1000)
    # 900 -> wraps past 1000 to 100: +200 (1000 - 900 + 100); -> 300: +200. 900 + 200 + 200 = 1300
    assert [counter.add(r) for r in (900, 100, 300)] == [900, 1100, 1300]
    assert counter.wraps == 1 and counter.restarts == 0
    # a restart the source reports is no wrap: the new reading counts from zero (1300 + 5)
    assert counter.add(5, restarted=True) == 1305 and counter.restarts == 1
