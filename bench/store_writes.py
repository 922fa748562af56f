"""What an exporter's store writes cost: bytes written to the disk and CPU per hour of data, in both head layouts.

An exporter writes its store in small transactions (the host exporter 5 ticks of its series every 5 s, the PM and
GPU exporters every second). Each commit appends every page it changed to the WAL, and the checkpoints copy them
into the file: on the disk the host exporter measures. This replays one hour of each exporter's writes, as fast
as it can, into a fresh store of each head layout, in the same run, and counts:

- bytes written (``wchar`` of /proc/self/io: what the write calls handed the kernel, WAL and checkpoints) and
  write calls;
- CPU seconds spent in ``Store.write`` (this thread's, user + system);
- kB written per write (a page is 4 kB: the WAL's frames and the checkpoint's copies).

Layouts: ``time, then series``, the head table's primary key in stores made now; ``series, then time``, the one
of stores made before 2026-12-02 (the same statements write both).

    .venv/bin/python bench/store_writes.py [--hours 1] [--out bench/results/store_writes.json]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from provenance import provenance
from rich.progress import track

from mltelemetry import store as store_module
from mltelemetry.exporters.host import HostCollector
from mltelemetry.schema import GPU_POWER, PM_POWER, Sample
from mltelemetry.store import Store

LAYOUTS = {"time, then series": "PRIMARY KEY (ts_ns, series_id)",
           "series, then time (before 2026-12-02)": "PRIMARY KEY (series_id, ts_ns)"}


def host_series() -> list[tuple[str, dict[str, str]]]:
    """This machine's host exporter series (what HostCollector publishes here)."""
    return [(s.metric, s.labels) for s in HostCollector("sut").sample(time.time_ns())]


# (name, series, seconds between ticks, ticks per write). PM: a WT310's items and the exporter's counters; GPU: one
# GPU's series at --interval 0.1 (the count a GPU exporter published on the H200, bench/results/h200_session3).
PATTERNS = [
    ("host exporter, 1 s, written every 5 ticks", None, 1.0, 5),
    ("PM exporter, 1 s, written every tick", 14, 1.0, 1),
    ("GPU exporter (1 GPU), 0.1 s, written every 10 ticks", 30, 0.1, 10),
]


def synthetic_series(metric: str, n: int) -> list[tuple[str, dict[str, str]]]:
    return [(metric, {"host": "sut", "item": f"s{i}"}) for i in range(n)]


def io_written() -> tuple[int, int]:
    """Bytes handed to write calls and write calls so far, this process."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["wchar"]), int(fields["syscw"])


def replay(path: Path, primary_key: str, series: list[tuple[str, dict[str, str]]], every_s: float,
           ticks_per_write: int, hours: float) -> dict[str, float]:
    schema = store_module._SCHEMA.replace(LAYOUTS["time, then series"], primary_key)
    sqlite3.connect(path, isolation_level=None).executescript("PRAGMA journal_mode=WAL;" + schema)
    writes = int(hours * 3600 / every_s / ticks_per_write)
    start_ns, step_ns = time.time_ns(), int(every_s * 1e9)
    with Store(path) as store:
        bytes0, calls0 = io_written()
        cpu = 0.0
        for w in track(range(writes), description=f"{path.stem}", transient=True):
            batch = [Sample(metric, labels, float(w + tick), start_ns + (w * ticks_per_write + tick) * step_ns)
                     for tick in range(ticks_per_write) for metric, labels in series]
            began = time.thread_time()
            store.write(batch)
            cpu += time.thread_time() - began
        bytes1, calls1 = io_written()
    per_hour = 1 / hours
    return {"writes_per_hour": writes * per_hour, "samples_per_hour": writes * ticks_per_write * len(series) * per_hour,
            "mb_written_per_hour": (bytes1 - bytes0) / 1e6 * per_hour,
            "write_calls_per_hour": (calls1 - calls0) * per_hour,
            "cpu_s_per_hour": cpu * per_hour,
            "kb_written_per_write": (bytes1 - bytes0) / 1e3 / writes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="hours of data replayed per pattern and layout")
    parser.add_argument("--out", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, count, every_s, ticks in PATTERNS:
            series = host_series() if count is None else synthetic_series(GPU_POWER if "GPU" in name else PM_POWER,
                                                                            count)
            results[f"{name} ({len(series)} series)"] = {
                layout: replay(Path(tmp) / f"{len(results)}-{i}.db", key, series, every_s, ticks, args.hours)
                for i, (layout, key) in enumerate(LAYOUTS.items())}
    print("| exporter's writes | head layout | MB written / h | write calls / h | kB written / write "
          "| CPU-s / h in Store.write |")
    print("|---|---|---|---|---|---|")
    for pattern, layouts in results.items():
        for layout, r in layouts.items():
            print(f"| {pattern} | {layout} | {r['mb_written_per_hour']:.1f} | {r['write_calls_per_hour']:.0f} "
                  f"| {r['kb_written_per_write']:.1f} | {r['cpu_s_per_hour']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps({**provenance(), "hours": args.hours, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
