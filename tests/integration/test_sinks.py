import re

import requests

from mltelemetry import schema
from mltelemetry.schema import Sample
from mltelemetry.sinks import PrometheusSink

GOLDEN = """\
# HELP mltelemetry_pm_energy_joules_total Energy integrated by the exporter from the meter's power readings.
# TYPE mltelemetry_pm_energy_joules_total counter
mltelemetry_pm_energy_joules_total{host="sut",meter="wt310"} 1000.0 1764572401250
mltelemetry_pm_energy_joules_total{host="sut",meter="wt310"} 1234.5 1764572402250
# HELP mltelemetry_pm_meter_info Identity of the power meter (model, serial, firmware, driver).
# TYPE mltelemetry_pm_meter_info gauge
mltelemetry_pm_meter_info{driver="wt300",firmware="F1.03",host="sut",meter="wt310",model="WT310",serial="C2PH"} 1.0
# HELP mltelemetry_pm_power_watts Active power measured by the power meter, averaged over its update interval.
# TYPE mltelemetry_pm_power_watts gauge
mltelemetry_pm_power_watts{host="sut",meter="wt310"} 87.5
mltelemetry_pm_power_watts{host="sut",meter="wt\\\\31\\"0\\n"} 1.0
"""


def test_exposition_matches_the_golden_text():
    sink = PrometheusSink("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sink.port}/metrics"
    try:
        labels = {"host": "sut", "meter": "wt310"}
        t0, t1, t2 = 1_764_572_400_250_000_000, 1_764_572_401_250_000_000, 1_764_572_402_250_999_999  # ns
        sink.publish_samples([Sample(schema.PM_POWER, labels, 70.0, t0), Sample(schema.PM_ENERGY, labels, 900.0, t0)])
        assert "} 900.0 1764572400250" in requests.get(url, timeout=5).text
        sink.publish_samples([Sample(schema.PM_POWER, labels, 80.0, t1), Sample(schema.PM_ENERGY, labels, 1000.0, t1)])
        # This scraper missed the tick t1: it gets that energy reading before the latest, each with its reading's
        # time (truncated to the millisecond); the gauges have no time and only their latest value.
        sink.publish_samples([Sample(schema.PM_POWER, labels, 87.5, t2), Sample(schema.PM_ENERGY, labels, 1234.5, t2),
                      Sample(schema.PM_INFO, {**labels, "driver": "wt300", "model": "WT310", "serial": "C2PH",
                                              "firmware": "F1.03"}, 1, t2),
                      Sample(schema.PM_POWER, {"host": "sut", "meter": 'wt\\31"0\n'}, 1.0, t2)])  # hostile label
        body = requests.get(url, timeout=5).text
        again = requests.get(url, timeout=5).text
        new = requests.get(url, headers={"User-Agent": "another scraper"}, timeout=5).text
    finally:
        sink.close()
    ours, _, process = body.partition("# HELP process_")  # then the process' own CPU and memory
    assert ours == GOLDEN
    assert "process_cpu_seconds_total " in process and "process_resident_memory_bytes " in process
    assert "1000.0 1764572401250" not in again and "1234.5 1764572402250" in again  # got the missed one already
    # A scraper new to the exporter gets every reading it holds (the last 60 ticks), oldest first.
    assert re.findall(r"mltelemetry_pm_energy_joules_total\S+ (\S+) (\d+)", new) == [
        ("900.0", "1764572400250"), ("1000.0", "1764572401250"), ("1234.5", "1764572402250")]


def test_series_not_published_for_a_while_leave_metrics():
    now = [100.0]
    sink = PrometheusSink("127.0.0.1", 0, stale_after_s=5.0, clock=lambda: now[0])
    try:
        gpu0 = {"host": "sut", "gpu": "0", "uuid": "GPU-a", "name": "H100"}
        gpu1 = {**gpu0, "gpu": "1", "uuid": "GPU-b"}
        sink.publish_samples([Sample(schema.GPU_TEMPERATURE, gpu0, 40.0, 1),
                              Sample(schema.GPU_TEMPERATURE, gpu1, 41.0, 1)])
        now[0] = 104.0
        sink.publish_samples([Sample(schema.GPU_TEMPERATURE, gpu0, 42.0, 2)])  # GPU 1 fell off the bus
        body = requests.get(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).text
        assert 'gpu="1"' in body  # 4 s old: still current
        now[0] = 106.0
        body = requests.get(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).text
        assert 'gpu="1"' not in body and 'mltelemetry_gpu_temperature_celsius{gpu="0"' in body
    finally:
        sink.close()


def test_a_series_that_left_the_page_comes_back_with_its_new_value_and_readings():
    now = [100.0]
    sink = PrometheusSink("127.0.0.1", 0, stale_after_s=5.0, clock=lambda: now[0])
    url = f"http://127.0.0.1:{sink.port}/metrics"
    try:
        gpu1 = {"host": "sut", "gpu": "1", "uuid": "GPU-b", "name": "H100"}
        sink.publish_samples([Sample(schema.GPU_TEMPERATURE, gpu1, 41.0, 1),
                              Sample(schema.GPU_ENERGY, gpu1, 500.0, 1_000_000)])
        now[0] = 110.0
        sink.publish_samples([])
        assert 'gpu="1"' not in requests.get(url, timeout=5).text  # gone for 10 s: off the page
        sink.publish_samples([Sample(schema.GPU_TEMPERATURE, dict(reversed(gpu1.items())), 43.0, 2),  # labels in
                              Sample(schema.GPU_ENERGY, gpu1, 900.0, 3_000_000)])  # another order, and as before
        body = requests.get(url, timeout=5).text
    finally:
        sink.close()
    assert re.findall(r'mltelemetry_gpu_temperature_celsius\{gpu="1".*\} (\S+)', body) == ["43.0"]
    # the counter's readings start again: the one from before it left is not served again
    assert re.findall(r'mltelemetry_gpu_energy_joules_total\{gpu="1".*\} (\S+) (\d+)', body) == [("900.0", "3")]


PM = {"host": "sut", "meter": "wt310"}
EPOCH = {"host": "sut", "campaign": "c", "scenario": "s", "run": "1", "action": "train", "epoch": "3", "status": "ok"}


def test_a_series_that_comes_later_takes_its_place_in_the_page_and_changed_values_show():
    # The page order and the lines of unchanged values are kept between renders: both must follow the samples.
    sink = PrometheusSink("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sink.port}/metrics"
    try:
        sink.publish_samples([Sample(schema.PM_POWER, {**PM, "meter": "a"}, 1.0, 1),
                              Sample(schema.PM_POWER, {**PM, "meter": "c"}, 3.0, 1)])
        requests.get(url, timeout=5)
        sink.publish_samples([Sample(schema.PM_POWER, {**PM, "meter": "b"}, 2.0, 2),
                              Sample(schema.PM_POWER, {**PM, "meter": "c"}, 3.5, 2)])  # a: unchanged, not sent
        lines = [line for line in requests.get(url, timeout=5).text.splitlines() if line.startswith(schema.PM_POWER)]
        assert lines == [f'{schema.PM_POWER}{{host="sut",meter="{m}"}} {v}' for m, v in
                         (("a", "1.0"), ("b", "2.0"), ("c", "3.5"))]
    finally:
        sink.close()


def test_a_series_kept_briefly_leaves_on_time_when_it_comes_after_series_kept_for_ever():
    # The page looks through its series only once the first of them may have expired: a series that arrives
    # later with a shorter keep must bring that moment forward.
    now = [100.0]
    sink = PrometheusSink("127.0.0.1", 0, clock=lambda: now[0], keep_s={schema.EVENT_START: 10.0})
    url = f"http://127.0.0.1:{sink.port}/metrics"
    try:
        sink.publish_samples([Sample(schema.PM_POWER, PM, 80.0, 1)])  # no stale_after_s: stays for ever
        assert "mltelemetry_pm_power_watts" in requests.get(url, timeout=5).text
        now[0] = 102.0
        sink.publish_samples([Sample(schema.EVENT_START, EPOCH, 1.7e9, 2)])  # leaves after 102 + 10 = 112
        now[0] = 111.9
        assert schema.EVENT_START in requests.get(url, timeout=5).text
        now[0] = 112.1
        body = requests.get(url, timeout=5).text
        assert schema.EVENT_START not in body and "mltelemetry_pm_power_watts" in body
    finally:
        sink.close()


def test_an_energy_reading_older_than_the_last_is_not_served_and_a_repeated_one_once():
    sink = PrometheusSink("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sink.port}/metrics"
    labels = {"host": "sut", "meter": "wt310"}
    try:
        sink.publish_samples([Sample(schema.PM_ENERGY, labels, 100.0, 2_000_000_000)])
        sink.publish_samples([Sample(schema.PM_ENERGY, labels, 90.0, 1_000_000_000)])  # the wall clock stepped back
        sink.publish_samples([Sample(schema.PM_ENERGY, labels, 101.0, 2_000_000_000)])  # the same reading again
        lines = [line for line in requests.get(url, timeout=5).text.splitlines() if line.startswith(schema.PM_ENERGY)]
    finally:
        sink.close()
    assert lines == ['mltelemetry_pm_energy_joules_total{host="sut",meter="wt310"} 101.0 2000']
