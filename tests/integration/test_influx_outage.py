"""A 30 s InfluxDB outage during a run, with an exporter restart in the middle of it: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import requests

from conftest import wait_for
from mltelemetry import schema
from mltelemetry.exporters.runtime import Exporter
from mltelemetry.influx import InfluxSink, V1Writer
from mltelemetry.schema import Sample
from mltelemetry.spool import Spool

OUTAGE_S = 30.0
INTERVAL_S = 1.0  # the exporter's own series (its sample count here) are reported at most once a second


def influxql(url: str, q: str) -> list[list]:
    response = requests.post(f"{url}/query", params={"q": q, "db": "telemetry", "epoch": "ns"}, timeout=10)
    response.raise_for_status()
    series = response.json()["results"][0].get("series", [])
    return series[0]["values"] if series else []


class Counting:
    """A collector whose every tick is one numbered sample, remembered so the test knows what must arrive."""

    name = "counting"

    def __init__(self) -> None:
        self.ticks: list[tuple[int, float]] = []

    def sample(self, ts_ns: int) -> list[Sample]:
        self.ticks.append((ts_ns, float(len(self.ticks) + 1)))
        return [Sample(schema.PM_POWER, {"host": "recorder", "meter": "m0"}, self.ticks[-1][1], ts_ns)]

    def close(self) -> None:
        pass


class Recording:
    """The real v1 writer, remembering every batch the server took, in the order it took them."""

    def __init__(self, writer: V1Writer) -> None:
        self.writer, self.delivered = writer, []

    def write(self, lines):
        self.writer.write(lines)
        self.delivered.extend(lines)

    def close(self) -> None:
        self.writer.close()


def start_exporter(url: str, spool_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mltelemetry", "exporter", "host", "--listen", "off", "--interval", str(INTERVAL_S),
         "--host-label", "outage", "--influx-url", url, "--influx-api", "v1", "--influx-bucket", "telemetry",
         "--spool-dir", str(spool_dir)],
        stderr=subprocess.PIPE, env={**os.environ, "INFLUX_TOKEN": ""})


def spooled_segments(spool_dir) -> list[str]:
    return sorted(p.name for p in spool_dir.glob("*.lp"))


def test_outage_and_exporter_restart_lose_nothing_and_repeat_nothing(restartable_influxdb, tmp_path):
    influx = restartable_influxdb
    requests.post(f"{influx.url}/query", params={"q": "CREATE DATABASE telemetry"}, timeout=10).raise_for_status()
    spool_dir = tmp_path / "spool-host"
    counter_query = f"SELECT value FROM {schema.EXPORTER_SAMPLES} WHERE host = 'outage'"

    # an exporter process (the real CLI) and an in-process exporter whose deliveries the test can watch
    first = start_exporter(influx.url, spool_dir)
    collector, recording = Counting(), Recording(V1Writer(influx.url, "telemetry"))
    sink = InfluxSink(recording, Spool(tmp_path / "spool-recorder", fsync=False), flush_interval_s=0.2)
    stop = threading.Event()
    in_process = threading.Thread(target=Exporter(collector, [sink], interval_s=0.1, host="recorder").run,
                                  args=(stop,))
    in_process.start()
    try:
        wait_for(lambda: len(influxql(influx.url, counter_query)) >= 4, 30, "the exporter's first samples")
        influx.stop()
        outage_began = time.time_ns()
        time.sleep(OUTAGE_S / 3)
        first.send_signal(signal.SIGTERM)  # the exporter restarts while the server is still away
        _, stderr = first.communicate(timeout=30)
        first_stopped = time.time_ns()
        assert first.returncode == 0, stderr.decode()
        assert "stay spooled" in stderr.decode() and spooled_segments(spool_dir)
        second = start_exporter(influx.url, spool_dir)
        time.sleep(max(0.0, outage_began / 1e9 + OUTAGE_S - time.time()))
        influx.start()
        outage_ended = time.time_ns()
        wait_for(lambda: not spooled_segments(spool_dir) and sink.spool.empty, 60, "both spools to drain")
        wait_for(lambda: influxql(influx.url, counter_query)[-1][0] > outage_ended + 10**9, 30,
                 "samples from after the outage")
    finally:
        stop.set()
        in_process.join()
        if "second" in locals():
            second.send_signal(signal.SIGTERM)
            _, stderr = second.communicate(timeout=30)
    assert second.returncode == 0, stderr.decode()
    assert "from before; they are sent first" in stderr.decode()

    # The exporter process: exporter_samples_total goes N, 2N, 3N, ... in each run, so a lost tick shows as a
    # jump and a sample written twice under a new time as a repeat; the two runs meet at the restart.
    points = influxql(influx.url, counter_query)
    values = [v for _, v in points]
    restart = next(i for i in range(1, len(values)) if values[i] < values[i - 1])
    for run in (values[:restart], values[restart:]):
        step = run[0]
        assert run == [step * k for k in range(1, len(run) + 1)]
    times = [t for t, _ in points]
    assert times == sorted(times)
    during = [t for t in times if outage_began < t < outage_ended]
    assert len(during) >= 0.6 * OUTAGE_S / INTERVAL_S  # the outage's samples are there (minus the restart)
    assert times[restart - 1] > first_stopped - 2 * 10**9  # the first run's last ticks, spooled at SIGTERM
    assert max(b - a for a, b in zip(times, times[1:])) < 5 * 10**9  # only the restart leaves a gap

    # The in-process exporter: every tick arrived exactly once, in the order it was taken.
    assert len(recording.delivered) == len(set(recording.delivered))
    counted = [line for line in recording.delivered if line.startswith(schema.PM_POWER)]
    delivered = [(int(line.rsplit(" ", 1)[1]), float(line.split("value=")[1].split(" ")[0])) for line in counted]
    assert delivered == collector.ticks
    assert sum(outage_began < t < outage_ended for t, _ in delivered) >= 0.8 * OUTAGE_S / 0.1
    stored = influxql(influx.url, f"SELECT value FROM {schema.PM_POWER} WHERE host = 'recorder'")
    assert [(t, v) for t, v in stored] == collector.ticks
    assert sink.errors_total >= 1 and sink.rejected_total == 0 and sink.spool.dropped_lines == 0
