"""InfluxDB sink benchmark: sustained write rate to each backend from one process, CPU cost per sample.

    .venv/bin/python bench/influx_bench.py [--seconds 10] [--series 500] [--out bench/influx_results.md]

Starts a VictoriaMetrics (the v2 path: influxdb-client → /api/v2/write) and an InfluxDB 1.x (the v1 path:
/write) on loopback, then for each one feeds an InfluxSink ``--series`` samples per tick as fast as the
sink takes them, for ``--seconds``: the sustained rate is lines the server accepted per second with the
spool staying empty. CPU per sample is this process's CPU time (every thread: encoding, batching, HTTP
client) over the samples written; the servers' CPU is not counted. Also: line-protocol encoding alone,
the Prometheus sink's /metrics rendering, and the rate at which a spool filled during an outage drains.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from provenance import provenance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import free_port, influxdb_config  # noqa: E402  (the tests' server helpers)
from mltelemetry import schema  # noqa: E402
from mltelemetry.influx import InfluxSink, V1Writer, V2Writer, sample_line  # noqa: E402
from mltelemetry.schema import Sample  # noqa: E402
from mltelemetry.sinks import PrometheusSink  # noqa: E402
from mltelemetry.spool import Spool  # noqa: E402


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 300:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def samples(series: int, ts_ns: int) -> list[Sample]:
    return [Sample(schema.HOST_CPU_UTILIZATION, {"host": "bench-sut", "cpu": str(i)}, 0.5 + i / 1e4, ts_ns)
            for i in range(series)]


def sustained(writer, spool_dir: Path, seconds: float, series: int) -> dict[str, float]:
    sink = InfluxSink(writer, Spool(spool_dir, fsync=False), flush_interval_s=1.0, batch_lines=5000)
    cpu0, t0 = time.process_time(), time.monotonic()
    published, tick = 0, 0
    while time.monotonic() - t0 < seconds:
        backlog = published - sink.written_total
        if backlog > 4 * 5000:  # do not outrun the server: measure what it sustains
            time.sleep(0.005)
            continue
        sink.publish_samples(samples(series, time.time_ns() + tick))
        published += series
        tick += 1
    sink.close()
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    assert sink.spool.empty and sink.errors_total == 0 and sink.written_total == published, vars(sink)
    return {"lines_per_s": published / wall, "cpu_us_per_sample": cpu / published * 1e6, "samples": published}


def drain_rate(writer_factory, spool_dir: Path, lines: int) -> float:
    """Lines per second a full spool is sent at once the server is back."""
    down = V1Writer(f"http://127.0.0.1:{free_port()}", "nowhere")  # nothing listens: every write fails
    sink = InfluxSink(down, Spool(spool_dir, fsync=True), flush_interval_s=0.05, max_backoff_s=60)
    t = time.time_ns()
    for k in range(0, lines, 1000):
        sink.publish_samples(samples(1000, t + k))
        time.sleep(0.06)
    deadline = time.monotonic() + 60
    while sink.spool.lines < lines and time.monotonic() < deadline:
        time.sleep(0.05)
    sink._stop.set()
    sink._wake.set()
    sink._thread.join()
    sink.spool.close()
    spooled = Spool(spool_dir, fsync=True)
    assert spooled.lines == lines, spooled.lines
    t0 = time.monotonic()
    back = InfluxSink(writer_factory(), spooled, flush_interval_s=0.05)
    while not back.spool.empty:
        time.sleep(0.01)
    rate = lines / (time.monotonic() - t0)
    back.close()
    return rate


def encoding_cost(series: int) -> float:
    """µs of CPU to encode one sample as line protocol: best of three one-second runs."""
    batch, best = samples(series, time.time_ns()), float("inf")
    for _ in range(3):
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < 1.0:
            for s in batch:
                sample_line(s)
            n += len(batch)
        best = min(best, (time.process_time() - t0) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--series", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="influx-bench-"))
    processes = []
    try:
        vm_port, influx_port = free_port(), free_port()
        processes.append(subprocess.Popen(
            [shutil.which("victoria-metrics"), f"-storageDataPath={tmp / 'vm'}", f"-httpListenAddr=127.0.0.1:{vm_port}",
             "-influxSkipSingleField"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        processes.append(subprocess.Popen([shutil.which("influxd"), "-config", influxdb_config(tmp, influx_port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        vm, influx = f"http://127.0.0.1:{vm_port}", f"http://127.0.0.1:{influx_port}"
        wait_ready(f"{vm}/health")
        wait_ready(f"{influx}/ping")
        requests.post(f"{influx}/query", params={"q": "CREATE DATABASE bench"}, timeout=10).raise_for_status()

        prom = PrometheusSink("127.0.0.1", 0)
        prom.publish_samples(samples(10_000, time.time_ns()))
        url = f"http://127.0.0.1:{prom.port}/metrics"
        requests.get(url, timeout=10)
        t0 = time.monotonic()
        for _ in range(10):
            requests.get(url, timeout=10)
        scrape_ms = (time.monotonic() - t0) / 10 * 1000
        prom.close()

        results = {
            "v2 → VictoriaMetrics": sustained(V2Writer(vm, "lab", "bench"), tmp / "s1", args.seconds, args.series),
            "v1 → InfluxDB 1.6": sustained(V1Writer(influx, "bench"), tmp / "s2", args.seconds, args.series),
        }
        drain = {"v2 → VictoriaMetrics": drain_rate(lambda: V2Writer(vm, "lab", "bench"), tmp / "d1", 50_000),
                 "v1 → InfluxDB 1.6": drain_rate(lambda: V1Writer(influx, "bench"), tmp / "d2", 50_000)}
        encode_us = encoding_cost(args.series)
    finally:
        for p in processes:
            p.terminate()
            p.wait(timeout=15)
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [f"# InfluxDB sink benchmark ({time.strftime('%Y-%m-%d')})", "",
             f"`{' '.join(['python', 'bench/influx_bench.py', *sys.argv[1:]])}` on {platform.node()} "
             f"({platform.processor() or platform.machine()}, Python {platform.python_version()}); servers on "
             "loopback on the same machine (they share its cores with the benchmark).", "",
             f"Commit {provenance()['commit']}; this file is the results file (`--out`).", "",
             f"One process, {args.series} series a tick, batches of 5000 lines, {args.seconds:g} s per backend:", "",
             "| backend | sustained lines/s | CPU µs per sample (this process) | spool drain lines/s |",
             "| --- | ---: | ---: | ---: |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['lines_per_s']:,.0f} | {r['cpu_us_per_sample']:.1f} | {drain[name]:,.0f} |")
    lines += ["", f"- line-protocol encoding alone: {encode_us:.2f} µs a sample",
              f"- Prometheus sink, /metrics with 10,000 series: {scrape_ms:.0f} ms a scrape", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
