"""Benchmark of the embedded store (``mltelemetry.store.Store``); results and method in bench/store.md.

Measures, on a synthetic but realistic host (50 series at 1 Hz: power meter, host, one GPU, two exporters'
self-metrics):

1. samples/s through ``Store.write``: the bulk load (``--bulk-seconds`` of every series per write) and the
   exporter pattern (one sample of every series per write, as a sink flushing once a second), each against
   a baseline timed in the same run: a plain ``executemany`` into a rowid table ``(series, ts, value)``;
2. bytes per sample on disk (main file + WAL after ``wal_checkpoint(TRUNCATE)``) for ``--days`` of data;
3. the time of ``Store.query(metric, labels, start_ns, end_ns)`` for one 10-minute window of one series,
   over many random windows.

``--experiments`` adds measurements that explain the numbers: where ``write`` spends its time, the chunk
lookup of ``query`` against the length of the history, other encodings and chunk sizes of the value bytes,
and prototypes of changes as ``Store`` subclasses in this file (none of them edits ``mltelemetry/store.py``).

    .venv/bin/python bench/store_bench.py --days 7 --experiments
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mltelemetry import schema
from mltelemetry import store as store_module
from mltelemetry.schema import Sample
from mltelemetry.store import Store, labels_key

console = Console()
NS = 1_000_000_000
T0_NS = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
WINDOW_S = 600

GOAL_SAMPLES_PER_S = 100_000
GOAL_BYTES_PER_SAMPLE = 16.0
GOAL_WINDOW_MS = 200.0


# --- synthetic host --------------------------------------------------------------------------------------
# Each generator gets (rng, t_s: seconds since T0 of each tick, state dict) and returns float64 values,
# with the resolution the real source has (meter 0.01 W, psutil 0.1 %, NVML mW / mJ / integer %, bytes).

Gen = Callable[[np.random.Generator, np.ndarray, dict], np.ndarray]


def _load(t_s: np.ndarray, period_s: float = 5400.0) -> np.ndarray:
    """A workload shape between 0 and 1: training phases of ~1.5 h with idle gaps."""
    return 0.5 + 0.5 * np.sin(2 * np.pi * t_s / period_s)


def _counter(state: dict, increments: np.ndarray, start: float = 0.0) -> np.ndarray:
    total = state.get("total", start) + np.cumsum(increments)
    state["total"] = float(total[-1])
    return total


def power_meter_w(rng, t, st):  # ~150 W with noise, 0.01 W resolution
    return np.round(120 + 60 * _load(t) + rng.normal(0, 3, t.size), 2)


def voltage_v(rng, t, st):
    return np.round(230 + rng.normal(0, 0.4, t.size), 1)


def current_a(rng, t, st):
    return np.round((120 + 60 * _load(t) + rng.normal(0, 3, t.size)) / 230, 3)


def energy_integrated_j(rng, t, st):  # exporter integrates power * dt: full float64 mantissa
    power = 120 + 60 * _load(t) + rng.normal(0, 3, t.size)
    return _counter(st, power * (1 + rng.normal(0, 2e-4, t.size)), 1.2e6)


def count_up(rng, t, st):  # pm_samples_total and the like: +1 per tick
    return _counter(st, np.ones(t.size), 86_400.0)


def rare_counter(rng, t, st):
    return _counter(st, rng.poisson(0.0005, t.size).astype(float))


def constant(value: float) -> Gen:
    return lambda rng, t, st: np.full(t.size, value)


def cpu_ratio(base: float, sd: float) -> Gen:  # psutil: percent with one decimal, divided by 100
    return lambda rng, t, st: np.round(np.clip(100 * (base * _load(t) + rng.normal(0, sd, t.size)), 0, 100),
                                       1) / 100


def memory_bytes(base: float) -> Gen:
    def gen(rng, t, st):
        pages = st.get("pages", base / 4096) + np.cumsum(rng.integers(-2000, 2001, t.size))
        st["pages"] = float(pages[-1])
        return pages * 4096 + 2e9 * _load(t) // 4096 * 4096
    return gen


def load_average(tau_s: float) -> Gen:
    def gen(rng, t, st):
        level = st.get("level", 4.0)
        out = np.empty(t.size)
        target = 8 * _load(t) + rng.normal(0, 1.5, t.size)
        alpha = 1 - np.exp(-5 / tau_s)
        for i in range(t.size):  # kernel-style exponential average, updated every 5 s
            if i % 5 == 0:
                level += alpha * (max(target[i], 0) - level)
            out[i] = level
        st["level"] = level
        return np.round(out, 2)
    return gen


def disk_bytes(rate: float) -> Gen:  # bursty, multiples of 4 KiB
    return lambda rng, t, st: _counter(
        st, (rng.random(t.size) < 0.2) * rng.geometric(1 / rate, t.size) * 4096.0, 5e10)


def net_bytes(rate: float) -> Gen:
    return lambda rng, t, st: _counter(st, rng.poisson(rate, t.size) * 1448.0 + rng.integers(0, 400, t.size),
                                       3e11)


def rapl_j(watts: float) -> Gen:  # integer µJ counter made monotonic, in J
    def gen(rng, t, st):
        uj = st.get("uj", 7e12) + np.cumsum(np.round((watts * (0.3 + _load(t)) + rng.normal(0, 2, t.size)) * 1e6))
        st["uj"] = float(uj[-1])
        return uj / 1e6
    return gen


def nvml_power_w(sd: float) -> Gen:  # NVML milliwatts / 1000
    return lambda rng, t, st: np.round(60 + 180 * _load(t) + rng.normal(0, sd, t.size) * 1000) / 1000


def nvml_energy_j(rng, t, st):  # NVML millijoule counter / 1000
    mj = st.get("mj", 4e9) + np.cumsum(np.round((60 + 180 * _load(t) + rng.normal(0, 8, t.size)) * 1000))
    st["mj"] = float(mj[-1])
    return mj / 1000


def gpu_temperature(rng, t, st):
    return np.round(45 + 30 * _load(t) + rng.normal(0, 0.4, t.size))


def percent_ratio(rng, t, st):  # NVML integer percent
    return np.clip(np.round(100 * _load(t) + rng.normal(0, 4, t.size)), 0, 100) / 100


def steps(levels: tuple[float, ...], p_change: float) -> Gen:  # clocks, P-state, memory used: piecewise flat
    def gen(rng, t, st):
        idx = st.get("idx", 0) + np.cumsum(rng.random(t.size) < p_change)
        st["idx"] = int(idx[-1])
        return np.asarray(levels, float)[idx % len(levels)]
    return gen


def duration_s(rng, t, st):  # perf_counter difference: every bit of the mantissa is noise
    return 0.0008 + rng.exponential(0.0004, t.size)


def per_tick(n: int) -> Gen:
    return lambda rng, t, st: _counter(st, np.full(t.size, float(n)))


@dataclass
class Series:
    metric: str
    labels: dict[str, str]
    exporter: str  # which exporter stamps it: series of one exporter share their timestamps
    gen: Gen
    kind: str  # for the per-kind size breakdown
    state: dict = field(default_factory=dict)


def host_series() -> list[Series]:
    h = "node1"
    pm = {"host": h, "meter": "pm0"}
    gpu = {"host": h, "gpu": "0", "uuid": "GPU-5f1c2a9e-0c1d-4c7e-9a40-1b2c3d4e5f60", "name": "NVIDIA A100-SXM4-40GB"}
    s = schema
    out = [
        Series(s.PM_POWER, pm, "pm", power_meter_w, "float gauge, 0.01 res"),
        Series(s.PM_VOLTAGE, pm, "pm", voltage_v, "float gauge, 0.01 res"),
        Series(s.PM_CURRENT, pm, "pm", current_a, "float gauge, 0.01 res"),
        Series(s.PM_ENERGY, pm, "pm", energy_integrated_j, "float counter, full mantissa"),
        Series(s.PM_SAMPLES, pm, "pm", count_up, "integer counter"),
        Series(s.PM_INVALID, pm, "pm", rare_counter, "flat / rarely changing"),
        Series(s.PM_GAP, pm, "pm", constant(0.0), "flat / rarely changing"),
        Series(s.PM_CONNECTED, pm, "pm", constant(1.0), "flat / rarely changing"),
        Series(s.HOST_CPU_UTILIZATION, {"host": h, "cpu": "total"}, "host", cpu_ratio(0.6, 0.03),
               "float gauge, 0.01 res"),
    ]
    out += [Series(s.HOST_CPU_UTILIZATION, {"host": h, "cpu": str(i)}, "host", cpu_ratio(0.6, 0.08),
                   "float gauge, 0.01 res") for i in range(4)]
    out += [
        Series(s.HOST_MEMORY_USED, {"host": h}, "host", memory_bytes(2.4e10), "integer gauge"),
        Series(s.HOST_MEMORY_AVAILABLE, {"host": h}, "host", memory_bytes(1.0e11), "integer gauge"),
        Series(s.HOST_MEMORY_TOTAL, {"host": h}, "host", constant(135_089_389_568.0), "flat / rarely changing"),
        Series(s.HOST_SWAP_USED, {"host": h}, "host", constant(0.0), "flat / rarely changing"),
    ]
    out += [Series(s.HOST_LOAD, {"host": h, "period": p}, "host", load_average(tau), "float gauge, 0.01 res")
            for p, tau in (("1m", 60), ("5m", 300), ("15m", 900))]
    for dev, rate in (("nvme0n1", 40), ("sda", 5)):
        out += [Series(s.HOST_DISK_READ, {"host": h, "device": dev}, "host", disk_bytes(rate), "integer counter"),
                Series(s.HOST_DISK_WRITTEN, {"host": h, "device": dev}, "host", disk_bytes(rate / 2),
                       "integer counter")]
    for nic, rate in (("eth0", 300), ("ib0", 2000)):
        out += [Series(s.HOST_NET_RECEIVED, {"host": h, "interface": nic}, "host", net_bytes(rate),
                       "integer counter"),
                Series(s.HOST_NET_TRANSMITTED, {"host": h, "interface": nic}, "host", net_bytes(rate / 3),
                       "integer counter")]
    out += [Series(s.HOST_RAPL_ENERGY, {"host": h, "zone": z}, "host", rapl_j(w), "float counter, µJ/mJ res")
            for z, w in (("package-0", 110), ("dram", 15))]
    out += [
        Series(s.GPU_POWER, {**gpu, "kind": "instant"}, "gpu", nvml_power_w(0.012), "float gauge, 0.01 res"),
        Series(s.GPU_POWER, {**gpu, "kind": "average"}, "gpu", nvml_power_w(0.004), "float gauge, 0.01 res"),
        Series(s.GPU_ENERGY, {**gpu, "method": "counter"}, "gpu", nvml_energy_j, "float counter, µJ/mJ res"),
        Series(s.GPU_TEMPERATURE, gpu, "gpu", gpu_temperature, "integer gauge"),
        Series(s.GPU_UTILIZATION, gpu, "gpu", percent_ratio, "float gauge, 0.01 res"),
        Series(s.GPU_MEMORY_UTILIZATION, gpu, "gpu", percent_ratio, "float gauge, 0.01 res"),
        Series(s.GPU_MEMORY_USED, gpu, "gpu", steps((2.1e9, 3.5e10, 3.9e10, 1.2e10), 1 / 1800),
               "flat / rarely changing"),
        Series(s.GPU_CLOCK, {**gpu, "clock": "sm"}, "gpu", steps((2.1e8, 1.41e9, 1.275e9, 1.41e9), 1 / 300),
               "flat / rarely changing"),
        Series(s.GPU_PSTATE, gpu, "gpu", steps((8.0, 0.0, 0.0, 2.0), 1 / 1800), "flat / rarely changing"),
        Series(s.GPU_POWER_LIMIT, gpu, "gpu", constant(400.0), "flat / rarely changing"),
        Series(s.GPU_THROTTLE, gpu, "gpu", steps((0.0, 0.0, 4.0, 0.0, 1.0), 1 / 600), "flat / rarely changing"),
        Series(s.GPU_UP, gpu, "gpu", constant(1.0), "flat / rarely changing"),
    ]
    for exporter, n in (("host", 22), ("gpu", 12)):
        lab = {"host": h, "exporter": exporter}
        out += [Series(s.EXPORTER_SAMPLE_DURATION, lab, exporter, duration_s, "float gauge, full mantissa"),
                Series(s.EXPORTER_SAMPLES, lab, exporter, per_tick(n), "integer counter"),
                Series(s.EXPORTER_ERRORS, lab, exporter, rare_counter, "flat / rarely changing"),
                Series(s.EXPORTER_MISSED_TICKS, lab, exporter, rare_counter, "flat / rarely changing")]
    assert len(out) == 50, len(out)
    return out


class Fleet:
    """Generates blocks of consecutive seconds for every series (deterministic for a seed)."""

    def __init__(self, seed: int, jitter_us: float) -> None:
        self.series = host_series()
        self.rng = np.random.default_rng(seed)
        self.jitter_ns = jitter_us * 1000
        self.offset_ns = {"pm": 113_000_000, "host": 402_000_000, "gpu": 771_000_000}
        self.next_s = 0
        self.loaded_s = 0  # seconds of the bulk load (the flush pattern appends after them)

    def block(self, n: int) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """``n`` ticks: timestamps per exporter and values per series."""
        t_s = np.arange(self.next_s, self.next_s + n, dtype=np.float64)
        ticks = np.arange(self.next_s, self.next_s + n, dtype=np.int64) * NS + T0_NS
        self.next_s += n
        # Wall-clock stamp taken after waking on a monotonic deadline: a base latency plus a long-ish tail.
        ts = {e: ticks + off + (50_000 + self.rng.exponential(self.jitter_ns, n)).astype(np.int64)
              if self.jitter_ns else ticks + off for e, off in self.offset_ns.items()}
        values = [s.gen(self.rng, t_s, s.state).astype(np.float64) for s in self.series]
        return ts, values

    def samples(self, ts: dict[str, np.ndarray], values: list[np.ndarray]) -> list[Sample]:
        out: list[Sample] = []
        for s, v in zip(self.series, values):
            metric, labels = s.metric, s.labels
            out += [Sample(metric, labels, x, t) for x, t in zip(v.tolist(), ts[s.exporter].tolist())]
        return out

    def samples_by_tick(self, ts: dict[str, np.ndarray], values: list[np.ndarray]) -> list[list[Sample]]:
        """One list per tick, as a sink flushing once a second hands them to ``Store.write``."""
        ts_l = {e: t.tolist() for e, t in ts.items()}
        vals = [v.tolist() for v in values]
        return [[Sample(s.metric, s.labels, vals[j][i], ts_l[s.exporter][i]) for j, s in enumerate(self.series)]
                for i in range(len(vals[0]))]

    def rows(self, ts: dict[str, np.ndarray], values: list[np.ndarray]) -> list[tuple[int, int, float]]:
        out: list[tuple[int, int, float]] = []
        for sid, (s, v) in enumerate(zip(self.series, values), 1):
            out += zip([sid] * v.size, ts[s.exporter].tolist(), v.tolist())
        return out


# --- baseline ----------------------------------------------------------------------------------------------
class Baseline:
    """A plain rowid table (series, ts, value), same pragmas as the store, one transaction per batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE samples (series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL)")

    def write(self, rows: list[tuple[int, int, float]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows)
        self.db.execute("COMMIT")

    def query(self, sid: int, lo: int, hi: int) -> pd.DataFrame:
        rows = self.db.execute("SELECT ts, value FROM samples WHERE series=? AND ts BETWEEN ? AND ? ORDER BY ts",
                               (sid, lo, hi)).fetchall()
        return pd.DataFrame({"ts_ns": np.array([r[0] for r in rows], np.int64),
                             "value": np.array([r[1] for r in rows], np.float64)})


# --- helpers ------------------------------------------------------------------------------------------------
def disk_bytes_after_checkpoint(path: Path) -> tuple[int, int, int]:
    """(main file, WAL) bytes after ``wal_checkpoint(TRUNCATE)``, and the WAL size just before it."""
    wal = Path(str(path) + "-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    db = sqlite3.connect(path)
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    db.close()
    if busy:
        console.print(f"[yellow]checkpoint of {path.name} was blocked")
    return path.stat().st_size, (wal.stat().st_size if wal.exists() else 0), wal_before


def table_bytes(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    rows = db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    db.close()
    out = dict(rows)
    out["(free pages)"] = free * page_size
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


# --- phases --------------------------------------------------------------------------------------------------
@dataclass
class Results:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.lines.append(text)
        console.print(text)


def bulk_load(args, tmp: Path, res: Results) -> tuple[Store, Baseline | None, Fleet, int, float]:
    fleet = Fleet(args.seed, args.jitter_us)
    n_series = len(fleet.series)
    seconds = int(round(args.days * 86_400))
    block = args.bulk_seconds
    fleet.loaded_s = seconds
    st = Store(tmp / "store.db")
    base = Baseline(tmp / "baseline.db") if args.baseline else None
    t_store = t_base = t_build = 0.0
    written = 0
    with progress_bar() as progress:
        task = progress.add_task(f"bulk write, {n_series} series x {block} s per write", total=seconds * n_series)
        done = 0
        while done < seconds:
            n = min(block, seconds - done)
            t = time.perf_counter()
            ts, values = fleet.block(n)
            batch = fleet.samples(ts, values)
            t_build += time.perf_counter() - t
            t = time.perf_counter()
            written += st.write(batch)
            t_store += time.perf_counter() - t
            del batch
            if base is not None:
                rows = fleet.rows(ts, values)
                t = time.perf_counter()
                base.write(rows)
                t_base += time.perf_counter() - t
                del rows
            done += n
            progress.update(task, advance=n * n_series)
    assert written == seconds * n_series
    res.add(f"bulk write: {written:,} samples ({args.days:g} days x {n_series} series at 1 Hz), "
            f"{n_series} series x {block} samples per write")
    res.add(f"  Store.write: {t_store:.1f} s -> {fmt_rate(written / t_store)} samples/s "
            f"(building the Sample objects, not timed: {t_build:.1f} s)")
    if base is not None:
        res.add(f"  baseline executemany (rowid table, no index): {t_base:.1f} s -> "
                f"{fmt_rate(written / t_base)} samples/s; Store/baseline throughput = {t_base / t_store:.2f}")
    return st, base, fleet, written, written / t_store


def sizes(args, tmp: Path, written: int, res: Results) -> float:
    main, wal, wal_before = disk_bytes_after_checkpoint(tmp / "store.db")
    bps = (main + wal) / written
    res.add(f"size: store {main / 1e6:,.1f} MB file + {wal / 1e6:.1f} MB WAL after checkpoint(TRUNCATE) "
            f"(WAL before it: {wal_before / 1e6:.1f} MB) -> {bps:.2f} bytes/sample")
    parts = table_bytes(tmp / "store.db")
    res.add("  by table/index: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sorted(parts.items(),
                                                                                       key=lambda kv: -kv[1])))
    if args.baseline:
        bmain, bwal, _ = disk_bytes_after_checkpoint(tmp / "baseline.db")
        bbps = (bmain + bwal) / written
        res.add(f"  baseline (rowid table, no index): {(bmain + bwal) / 1e6:,.1f} MB -> {bbps:.2f} bytes/sample; "
                f"Store is {bbps / bps:.1f}x smaller")
    return bps


def per_series_sizes(tmp: Path, fleet: Fleet, res: Results) -> None:
    db = sqlite3.connect(tmp / "store.db")
    ids = {(m, k): sid for sid, m, k in db.execute("SELECT id, metric, labels FROM series")}
    payload = dict(db.execute("SELECT series_id, sum(length(data)) FROM chunks GROUP BY series_id").fetchall())
    counts = dict(db.execute("SELECT series_id, sum(n) FROM chunks GROUP BY series_id").fetchall())
    db.close()
    by_kind: dict[str, list[float]] = defaultdict(list)
    worst = []
    for s in fleet.series:
        sid = ids[(s.metric, labels_key(s.labels))]
        b = payload[sid] / counts[sid]
        by_kind[s.kind].append(b)
        worst.append((b, s.metric.removeprefix(schema.PREFIX), s.labels.get("cpu") or s.labels.get("kind") or ""))
    res.add("  compressed chunk payload, bytes/sample by kind of series (mean, min-max, series):")
    for kind, bs in sorted(by_kind.items(), key=lambda kv: -np.mean(kv[1])):
        res.add(f"    {kind:30s} {np.mean(bs):5.2f}  ({min(bs):.2f}-{max(bs):.2f}, {len(bs)})")
    worst.sort(reverse=True)
    res.add("  largest: " + "; ".join(f"{m}{'{' + lab + '}' if lab else ''} {b:.2f}" for b, m, lab in worst[:4]))


def queries(args, st: Store, base: Baseline | None, fleet: Fleet, res: Results) -> float:
    rng = np.random.default_rng(args.seed + 1)
    seconds = fleet.loaded_s
    n_series = len(fleet.series)
    picks = [(int(rng.integers(n_series)), int(rng.integers(0, seconds - WINDOW_S))) for _ in range(args.windows)]

    def run(pick_list, fn) -> list[float]:
        times = []
        for j, start_s in pick_list:
            lo = T0_NS + start_s * NS
            t = time.perf_counter()
            frame = fn(j, lo, lo + WINDOW_S * NS)
            times.append(time.perf_counter() - t)
            assert WINDOW_S - 1 <= len(frame) <= WINDOW_S + 1, len(frame)
        return times

    def store_q(j, lo, hi, st=st):
        s = fleet.series[j]
        return st.query(s.metric, s.labels, lo, hi)

    for j, start_s in picks[:20]:  # warm the OS page cache and SQLite's for the index pages
        store_q(j, T0_NS + start_s * NS, T0_NS + (start_s + WINDOW_S) * NS)
    times = run(picks, store_q)
    med = statistics.median(times) * 1e3
    res.add(f"query: {args.windows} random 10-minute windows of one series out of {seconds / 86_400:g} days: "
            f"median {med:.2f} ms, p90 {pct(times, 90) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms "
            f"(Store.query -> DataFrame, warm OS cache)")
    early = [(j, int(s) % 3600) for j, s in picks[:200]]
    late = [(j, seconds - WINDOW_S - int(s) % 3600) for j, s in picks[:200]]

    def early_late(fn) -> tuple[list[float], list[float]]:  # alternating, so noise falls on both alike
        both = run([x for pair in zip(early, late) for x in pair], fn)
        return both[0::2], both[1::2]

    n_chunks = seconds / store_module.CHUNK_SAMPLES
    year = 365 * 86_400 / store_module.CHUNK_SAMPLES

    def slope_text(te: list[float], tl: list[float]) -> str:
        slope = (statistics.median(tl) - statistics.median(te)) / n_chunks
        return (f"{slope * 1e6:+.2f} us per chunk before the window, ~"
                f"{(statistics.median(te) + slope * year) * 1e3:.0f} ms extrapolated to the end of a year")

    t_early, t_late = early_late(store_q)
    res.add(f"  by position: first hour median {statistics.median(t_early) * 1e3:.2f} ms, "
            f"last hour median {statistics.median(t_late) * 1e3:.2f} ms")
    if base is not None:
        t = time.perf_counter()
        base.db.execute("CREATE INDEX samples_by_series_ts ON samples (series, ts)")
        t_index = time.perf_counter() - t
        base_times = run(picks[:20], lambda j, lo, hi: base.query(j + 1, lo, hi))
        base_times = run(picks, lambda j, lo, hi: base.query(j + 1, lo, hi))
        bmed = statistics.median(base_times) * 1e3
        res.add(f"  baseline (rowid table + index on (series, ts), built in {t_index:.1f} s after the load): "
                f"median {bmed:.2f} ms; Store/baseline time = {med / bmed:.2f}")
    if not args.experiments:
        return med
    res.add(f"  the chunk lookup (t_start<=hi AND t_end>=lo on an index of (series_id, t_start)) visits every "
            f"chunk of the series before the window: {slope_text(t_early, t_late)} of 1 Hz data (if the visited "
            f"rows stay in the OS cache)")
    variants = {}
    sb = SpanBoundStore(st.path)
    variants["prototype 4: t_start >= lo - longest chunk span of the series"] = sb
    for name, store in variants.items():
        run(picks[:20], lambda j, lo, hi, store=store: store_q(j, lo, hi, store))
        tr = run(picks, lambda j, lo, hi, store=store: store_q(j, lo, hi, store))
        te, tl = early_late(lambda j, lo, hi, store=store: store_q(j, lo, hi, store))
        res.add(f"  {name}: median {statistics.median(tr) * 1e3:.2f} ms; first hour "
                f"{statistics.median(te) * 1e3:.2f} ms, last hour {statistics.median(tl) * 1e3:.2f} ms; "
                f"{slope_text(te, tl)}")
    sb.close()
    st._db.execute("DROP INDEX chunks_by_series_time")
    st._db.execute("CREATE INDEX chunks_by_series_time ON chunks (series_id, t_start, t_end)")
    run(picks[:20], store_q)
    tr = run(picks, store_q)
    te, tl = early_late(store_q)
    res.add(f"  prototype 5: index on (series_id, t_start, t_end) instead, query unchanged: median "
            f"{statistics.median(tr) * 1e3:.2f} ms; first hour {statistics.median(te) * 1e3:.2f} ms, last hour "
            f"{statistics.median(tl) * 1e3:.2f} ms; {slope_text(te, tl)}")
    return med


class SpanBoundStore(Store):
    """Prototype 4: the chunk lookup bounded below by the longest span (t_end - t_start) of the series'
    chunks, so the index range covers the chunks near the window instead of every chunk since the series
    began. Here the spans are read once at open; the store would keep them (e.g. a column of ``series``)
    up to date at compaction. Late samples make a chunk's span long, so the bound stays correct."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self._spans = dict(self._db.execute(
            "SELECT series_id, max(t_end - t_start) FROM chunks GROUP BY series_id").fetchall())

    def _read_series(self, sid, lo, hi):
        span = self._spans.get(sid, 0)
        ts_parts, value_parts = [], []
        for t_start, n, data in self._db.execute(
                "SELECT t_start, n, data FROM chunks WHERE series_id=? AND t_start BETWEEN ? AND ? AND t_end>=?"
                " ORDER BY t_start", (sid, lo - span, hi, lo)):
            ts, values = store_module.decode_chunk(data, t_start, n)
            ts_parts.append(ts)
            value_parts.append(values)
        head = self._db.execute("SELECT ts_ns, value FROM samples WHERE series_id=? AND ts_ns BETWEEN ? AND ?",
                                (sid, lo, hi)).fetchall()
        if head:
            ts_parts.append(np.array([t for t, _ in head], np.int64))
            value_parts.append(np.array([v for _, v in head], np.float64))
        if not ts_parts:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        ts, values = np.concatenate(ts_parts), np.concatenate(value_parts)
        keep = (ts >= lo) & (ts <= hi)
        ts, values = ts[keep], values[keep]
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        last_of_each = np.append(ts[1:] != ts[:-1], True)
        return ts[last_of_each], values[last_of_each]


def flush_pattern(args, st: Store, base: Baseline | None, fleet: Fleet, res: Results) -> float:
    """One write per second of every series, continuing the loaded store (a steady state after the load).
    Store and baseline writes alternate, so the machine's noise falls on both alike."""
    n = args.flush_writes
    ts, values = fleet.block(n)
    ticks = fleet.samples_by_tick(ts, values)
    rows = fleet.rows(ts, values)
    per_tick_rows = [rows[i::n] for i in range(n)]  # rows are series-major: every n-th row is one tick
    times, btimes = [], []
    for i, batch in enumerate(ticks):
        t = time.perf_counter()
        st.write(batch)
        times.append(time.perf_counter() - t)
        if base is not None:
            t = time.perf_counter()
            base.write(per_tick_rows[i])
            btimes.append(time.perf_counter() - t)
    per_write = len(fleet.series)
    rate = n * per_write / sum(times)
    res.add(f"flush pattern: {n} writes of {per_write} series x 1 sample, on the loaded store: "
            f"{fmt_rate(rate)} samples/s (total time; {fmt_rate(per_write / statistics.median(times))} at the "
            f"median write); per write median {statistics.median(times) * 1e3:.2f} ms, "
            f"p99 {pct(times, 99) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms "
            f"(every {store_module.CHUNK_SAMPLES}th write compacts all series)")
    if base is not None:
        brate = n * per_write / sum(btimes)
        res.add(f"  baseline executemany (rowid table, no index), one transaction per write, alternating with the "
                f"store's: {fmt_rate(brate)} samples/s ({fmt_rate(per_write / statistics.median(btimes))} at the "
                f"median write, {statistics.median(btimes) * 1e3:.2f} ms); Store/baseline throughput = "
                f"{rate / brate:.2f}")
    return rate


# --- experiments (explain the numbers; nothing here changes the store) -------------------------------------
class CountEachWriteStore(Store):
    """The write path before commit 9f7a3e2: ``SELECT count(*)`` over the head of every series on every
    write (reproduced by forgetting the head counts the store now keeps in memory)."""

    def write(self, samples):  # type: ignore[override]
        getattr(self, "_head_counts", {}).clear()
        return super().write(samples)


_KEYS: dict[tuple, str] = {}


def _cached_labels_key(labels: dict[str, str]) -> str:
    """``labels_key`` memoised on the dict's items in their own order (equal dicts in another order only
    get a second cache entry with the same canonical text)."""
    items = tuple(labels.items())
    key = _KEYS.get(items)
    if key is None:
        key = _KEYS[items] = labels_key(labels)
    return key


class CachedKeyStore(Store):
    """Prototype 1: ``Store.write`` unchanged except that ``labels_key`` is memoised (json.dumps once per
    label set, not once per sample)."""

    def write(self, samples):  # type: ignore[override]
        store_module.labels_key = _cached_labels_key
        try:
            return super().write(samples)
        finally:
            store_module.labels_key = labels_key


class AppendHeadStore(Store):
    """Prototype 2: prototype 1 + recent samples appended in arrival order (a rowid table without index,
    ``recent``) instead of the table clustered by (series_id, ts_ns), so a write of one sample per series
    dirties ~1 page instead of one page per series. Head counts in memory as the store keeps them now; a
    series due for compaction gets its head by one scan of ``recent`` (at most series x CHUNK_SAMPLES rows).
    Write path only: a query would read the head with the same scan (its cost is measured below)."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS recent (series_id INTEGER NOT NULL, ts_ns INTEGER NOT NULL,"
                         " value REAL NOT NULL)")
        self._recent_counts: dict[int, int] = {}

    def write(self, samples):  # type: ignore[override]
        by_series: dict = defaultdict(list)
        for s in samples:
            by_series[(s.metric, _cached_labels_key(s.labels))].append((int(s.ts_ns), float(s.value)))
        if not by_series:
            return 0
        db, chunk, counts = self._db, store_module.CHUNK_SAMPLES, self._recent_counts
        db.execute("BEGIN IMMEDIATE")
        try:
            plain, due = [], {}
            for (metric, key), rows in by_series.items():
                sid = self._series_id(metric, key)
                n = counts.get(sid)
                if n is None:
                    n = db.execute("SELECT count(*) FROM recent WHERE series_id=?", (sid,)).fetchone()[0]
                if n + len(rows) < chunk:
                    plain += [(sid, t, v) for t, v in rows]
                    counts[sid] = n + len(rows)
                else:
                    due[sid] = rows
            db.executemany("INSERT INTO recent VALUES (?, ?, ?)", plain)
            if due:
                self._compact_due(due)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._series_ids.clear()
            counts.clear()
            raise
        return sum(len(rows) for rows in by_series.values())

    def _compact_due(self, due: dict[int, list[tuple[int, float]]]) -> None:
        db, chunk = self._db, store_module.CHUNK_SAMPLES
        marks = ",".join("?" * len(due))
        head: dict[int, list] = defaultdict(list)
        for sid, t, v in db.execute(f"SELECT series_id, ts_ns, value FROM recent WHERE series_id IN ({marks})"
                                    " ORDER BY rowid", list(due)):
            head[sid].append((t, v))
        db.execute(f"DELETE FROM recent WHERE series_id IN ({marks})", list(due))
        chunks, rest = [], []
        for sid, rows in due.items():
            merged = dict(head[sid])
            merged.update(rows)  # a repeated timestamp keeps the newest value
            ts = np.fromiter(merged.keys(), np.int64, len(merged))
            values = np.fromiter(merged.values(), np.float64, len(merged))
            order = np.argsort(ts, kind="stable")
            ts, values = ts[order], values[order]
            full = len(ts) // chunk * chunk
            chunks += [(sid, int(ts[i]), int(ts[i + chunk - 1]), chunk,
                        store_module.encode_chunk(ts[i:i + chunk], values[i:i + chunk]))
                       for i in range(0, full, chunk)]
            rest += zip([sid] * (len(ts) - full), ts[full:].tolist(), values[full:].tolist())
            self._recent_counts[sid] = len(ts) - full
        db.executemany("INSERT INTO chunks (series_id, t_start, t_end, n, data) VALUES (?, ?, ?, ?, ?)", chunks)
        db.executemany("INSERT INTO recent VALUES (?, ?, ?)", rest)


PROTOTYPES = {CountEachWriteStore: "store before 9f7a3e2: count(*) per series per write",
              Store: "Store as is",
              CachedKeyStore: "prototype 1: labels_key memoised",
              AppendHeadStore: "prototype 2: 1 + recent samples in arrival order"}


def _time_writes(store_cls, path: Path, batches: list[list[Sample]]) -> list[float]:
    st = store_cls(path)
    times = []
    for batch in batches:
        t = time.perf_counter()
        st.write(batch)
        times.append(time.perf_counter() - t)
    db = st._db
    kept = db.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()[0]
    kept += db.execute("SELECT count(*) FROM samples").fetchone()[0]
    if store_cls is AppendHeadStore:
        kept += db.execute("SELECT count(*) FROM recent").fetchone()[0]
    distinct = {(s.metric, id(s.labels), s.ts_ns) for b in batches for s in b}  # Fleet shares label dicts
    assert kept == len(distinct), (store_cls.__name__, kept)  # every sample kept once
    st.close()
    return times


def _floor_writes(path: Path, rows_per_write: list[list[tuple[int, int, float]]], clustered: bool) -> list[float]:
    """Plain executemany per write into (series, ts, value): a rowid table, or one clustered by
    (series, ts) like the store's head table: what SQLite itself costs for the flush pattern."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (series INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL"
               + (", PRIMARY KEY (series, ts)) WITHOUT ROWID" if clustered else ")"))
    times = []
    for rows in rows_per_write:
        t = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
        times.append(time.perf_counter() - t)
    db.close()
    return times


def experiment_write_overhead(args, res: Results) -> None:
    """Where the write time goes, and what the prototypes above gain (fresh stores, same data)."""
    fleet = Fleet(args.seed, args.jitter_us)
    ts, values = fleet.block(args.bulk_seconds)
    batch = fleet.samples(ts, values)
    n = len(batch)

    def grouping() -> float:  # the grouping loop of Store.write, alone
        t = time.perf_counter()
        by_series: dict = defaultdict(list)
        for s in batch:
            by_series[(s.metric, labels_key(s.labels))].append((int(s.ts_ns), float(s.value)))
        return time.perf_counter() - t

    t_group = float("inf")
    flush_fleet = Fleet(args.seed, args.jitter_us)
    n_ticks = 2 * store_module.CHUNK_SAMPLES
    block = flush_fleet.block(n_ticks)
    ticks = flush_fleet.samples_by_tick(*block)
    rows = flush_fleet.rows(*block)
    tick_rows = [rows[i::n_ticks] for i in range(n_ticks)]
    per_write = len(flush_fleet.series)
    with tempfile.TemporaryDirectory(dir=args.tmp) as d:
        tmp = Path(d)
        # Interleaved repetitions, best of each: the machine's noise comes in periods of seconds.
        bulk: dict = defaultdict(lambda: float("inf"))
        flush: dict = {}
        floors: dict = {}
        for rep in range(3):
            t_group = min(t_group, grouping())
            for i, cls in enumerate(PROTOTYPES):
                bulk[cls] = min(bulk[cls], _time_writes(cls, tmp / f"b{i}{rep}.db", [batch[:1], batch])[1])
        for rep in range(2):
            for i, cls in enumerate(PROTOTYPES):
                f = _time_writes(cls, tmp / f"f{i}{rep}.db", ticks)
                flush[cls] = min(flush.get(cls, f), f, key=sum)
            for c in (False, True):
                f = _floor_writes(tmp / f"floor{c}{rep}.db", tick_rows, c)
                floors[c] = min(floors.get(c, f), f, key=sum)
        st = AppendHeadStore(tmp / "scan.db")
        st.write([x for tick in ticks[:store_module.CHUNK_SAMPLES - 1] for x in tick])
        t = time.perf_counter()
        for i in range(200):
            st._db.execute("SELECT ts_ns, value FROM recent WHERE series_id=? AND ts_ns BETWEEN ? AND ?",
                           (1 + i % per_write, T0_NS, T0_NS + WINDOW_S * NS)).fetchall()
        t_scan = (time.perf_counter() - t) / 200
        st.close()
    res.add(f"write breakdown: one bulk write of {n:,} samples (best of 3) takes {bulk[Store] * 1e3:.0f} ms; "
            f"the grouping loop of Store.write alone (labels_key = json.dumps per sample) {t_group * 1e3:.0f} ms "
            f"({t_group / bulk[Store]:.0%})")
    res.add(f"  prototypes, fresh stores, bulk = 1 write of {n:,} (best of 3), flush = {n_ticks} writes of "
            f"{per_write} x 1 (best of 2):")
    for cls, name in PROTOTYPES.items():
        f = flush[cls]
        res.add(f"  {name:55s} bulk {fmt_rate(n / bulk[cls]):>9s} samples/s ({bulk[Store] / bulk[cls]:.2f}x), "
                f"flush {fmt_rate(len(f) * per_write / sum(f)):>7s} samples/s "
                f"({sum(flush[Store]) / sum(f):.2f}x, median {statistics.median(f) * 1e3:.2f} ms/write)")
    for clustered, f in floors.items():
        name = ("floor: executemany, table clustered by (series, ts)" if clustered
                else "floor: executemany, rowid table")
        res.add(f"  {name:55s} {'':27s} flush {fmt_rate(len(f) * per_write / sum(f)):>7s} samples/s "
                f"(median {statistics.median(f) * 1e3:.2f} ms/write)")
    res.add(f"  prototype 2's price: a query reads a series' recent samples by a scan of {per_write} x "
            f"{store_module.CHUNK_SAMPLES - 1} rows: {t_scan * 1e3:.2f} ms")


def _shuffle(a: np.ndarray) -> bytes:
    return a.view(np.uint8).reshape(-1, 8).T.tobytes()


def enc_current(ts, v, level=6):
    return store_module.encode_chunk(ts, v) if level == 6 else zlib.compress(
        _shuffle(np.diff(ts, prepend=ts[0])) + _shuffle(v), level)


def enc_xor(ts, v):
    """Timestamps as delta-of-delta, values XORed with the previous value's bits (Gorilla-style), shuffled."""
    d = np.diff(ts, prepend=ts[0])
    dod = np.diff(d, prepend=d[0])
    bits = v.view(np.uint64)
    x = bits ^ np.concatenate([[np.uint64(0)], bits[:-1]])
    return zlib.compress(_shuffle(dod) + _shuffle(x), 6)


def enc_decimal(ts, v):
    """Values that are exact decimals of <= 6 places stored as zigzag int64 deltas; others XORed as above."""
    d = np.diff(ts, prepend=ts[0])
    dod = np.diff(d, prepend=d[0])
    for k in range(7):
        scaled = np.round(v * 10**k)
        if np.all(np.abs(scaled) < 2**53) and np.array_equal(scaled / 10**k, v):
            iv = scaled.astype(np.int64)
            dv = np.diff(iv, prepend=0)
            zz = ((dv << 1) ^ (dv >> 63)).view(np.uint64)
            return zlib.compress(bytes([k]) + _shuffle(dod) + _shuffle(zz), 6)
    bits = v.view(np.uint64)
    x = bits ^ np.concatenate([[np.uint64(0)], bits[:-1]])
    return zlib.compress(b"\xff" + _shuffle(dod) + _shuffle(x), 6)


def experiment_encodings(args, res: Results) -> None:
    """Chunk payload bytes/sample of one day of the synthetic host under other encodings and chunk sizes."""
    fleet = Fleet(args.seed, args.jitter_us)
    ts, values = fleet.block(86_400)
    variants: dict[str, tuple[Callable, int]] = {
        "current: zlib-6, shuffled deltas + shuffled f64, 600": (enc_current, 600),
        "same, 3600 samples per chunk": (enc_current, 3600),
        "same, zlib-9, 600": (lambda a, b: enc_current(a, b, 9), 600),
        "dod timestamps + XOR values, 600": (enc_xor, 600),
        "dod timestamps + decimal/XOR values, 600": (enc_decimal, 600),
        "dod timestamps + decimal/XOR values, 3600": (enc_decimal, 3600),
    }
    total = 86_400 * len(fleet.series)
    res.add("encodings, compressed payload over 1 day x 50 series (chunk rows add ~0.1 B/sample at 600):")
    for name, (enc, size) in variants.items():
        nbytes, t = 0, time.perf_counter()
        ts_only = 0
        for s, v in zip(fleet.series, values):
            t_arr = ts[s.exporter]
            for i in range(0, v.size, size):
                nbytes += len(enc(t_arr[i:i + size], v[i:i + size]))
                ts_only += len(enc(t_arr[i:i + size], np.zeros(min(size, v.size - i))))
        dt = time.perf_counter() - t
        res.add(f"  {name:48s} {nbytes / total:5.2f} B/sample (timestamps ~{ts_only / total:.2f}), "
                f"encode {dt / 2 / total * 1e9:.0f} ns/sample")
    zeros = np.zeros(store_module.CHUNK_SAMPLES)
    line = []
    for jitter in (0.0, args.jitter_us, 200.0, 1000.0):
        f = Fleet(args.seed, jitter)
        t_arr = f.block(86_400)[0]["host"]
        nb = sum(len(store_module.encode_chunk(t_arr[i:i + zeros.size], zeros))
                 for i in range(0, t_arr.size, zeros.size)) - 86_400 // zeros.size * len(zlib.compress(
                     bytes(8 * zeros.size), 6))
        line.append(f"{jitter:g} us: {nb / 86_400:.2f}")
    res.add("  timestamps alone (current encoding) by mean tick jitter, B/sample: " + ", ".join(line))


# --- main --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=float, default=7.0, help="days of 1 Hz data to load (7 = 30.24 M samples)")
    p.add_argument("--bulk-seconds", type=int, default=3600, help="seconds of every series per bulk write")
    p.add_argument("--flush-writes", type=int, default=1200, help="writes of one sample per series")
    p.add_argument("--windows", type=int, default=1000, help="random 10-minute windows to query")
    p.add_argument("--jitter-us", type=float, default=50.0,
                   help="mean wall-clock jitter of the exporters' ticks, on top of 50 us (0: exact 1 s steps)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-baseline", dest="baseline", action="store_false")
    p.add_argument("--experiments", action="store_true", help="also run the explanatory measurements")
    p.add_argument("--tmp", default=None, help="parent of the temporary directory (default: system temp)")
    args = p.parse_args(argv)

    res = Results()
    began = time.perf_counter()
    res.add(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    store_rev = subprocess.run(["git", "log", "-1", "--format=%h", "--", store_module.__file__], capture_output=True,
                               text=True, cwd=Path(store_module.__file__).parent).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", store_module.__file__], capture_output=True,
                           text=True, cwd=Path(store_module.__file__).parent).stdout.strip()
    res.add(f"store.py at commit {store_rev or '?'}{' (modified)' if dirty else ''}")
    res.add(f"machine: {platform.node()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, numpy {np.__version__}, pandas {pd.__version__}; "
            f"CHUNK_SAMPLES={store_module.CHUNK_SAMPLES}")
    with tempfile.TemporaryDirectory(prefix="store_bench_", dir=args.tmp) as d:
        tmp = Path(d)
        st, base, fleet, written, bulk_rate = bulk_load(args, tmp, res)
        if base is not None:
            base.db.close()
        bps = sizes(args, tmp, written, res)
        per_series_sizes(tmp, fleet, res)
        if base is not None:
            base = Baseline.__new__(Baseline)
            base.path, base.db = tmp / "baseline.db", sqlite3.connect(tmp / "baseline.db", isolation_level=None)
        rate_flush = flush_pattern(args, st, base, fleet, res)
        med = queries(args, st, base, fleet, res)
        st.close()
        if base is not None:
            base.db.close()
    if args.experiments:
        experiment_write_overhead(args, res)
        experiment_encodings(args, res)

    table = Table(title="goals")
    for col in ("measure", "goal", "result", "met"):
        table.add_column(col)
    table.add_row("bulk write, samples/s", f">= {GOAL_SAMPLES_PER_S:,}", fmt_rate(bulk_rate),
                  str(bulk_rate >= GOAL_SAMPLES_PER_S))
    table.add_row("1 s flush write, samples/s", f">= {GOAL_SAMPLES_PER_S:,}", fmt_rate(rate_flush),
                  str(rate_flush >= GOAL_SAMPLES_PER_S))
    table.add_row("bytes/sample on disk", f"<= {GOAL_BYTES_PER_SAMPLE:g}", f"{bps:.2f}",
                  str(bps <= GOAL_BYTES_PER_SAMPLE))
    table.add_row("10-min window query, median ms", f"<= {GOAL_WINDOW_MS:g}", f"{med:.2f}",
                  str(med <= GOAL_WINDOW_MS))
    console.print(table)
    console.print(f"total run time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
