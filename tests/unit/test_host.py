import os
import threading
import time
import warnings
from pathlib import Path

import psutil
import pytest

from mltelemetry import schema
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.exporters import host
from mltelemetry.exporters.host import (
    CPU_MODES,
    HostCollector,
    KernelFile,
    find_rapl_zones,
    memory_and_swap,
    whole_disks,
)
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store


def make_zone(root, name, zone, energy_uj, max_uj=1_000_000):
    path = root / "class" / "powercap" / name
    path.mkdir(parents=True)
    (path / "name").write_text(zone + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def test_rapl_counter_is_monotonic_across_a_wrap(tmp_path):
    package = make_zone(tmp_path, "intel-rapl:0", "package-0", 900_000)
    make_zone(tmp_path, "intel-rapl:0:0", "core", 10)
    make_zone(tmp_path, "intel-rapl:1:0", "core", 20)
    zones = {z.name: z for z in find_rapl_zones(tmp_path)}
    assert set(zones) == {"package-0", "core", "core-intel-rapl:1:0"}
    assert zones["package-0"].total_j == pytest.approx(0.9)
    (package / "energy_uj").write_text("950000\n")
    assert zones["package-0"].read_joules() == pytest.approx(0.95)
    (package / "energy_uj").write_text("100000\n")  # wrapped at 1 J: 0.05 J to the top, then 0.1 J
    assert zones["package-0"].read_joules() == pytest.approx(1.1)


def test_unreadable_rapl_is_skipped_and_the_collector_carries_on(tmp_path, caplog):
    broken = make_zone(tmp_path, "intel-rapl:0", "package-0", 5)
    (broken / "energy_uj").unlink()
    caplog.set_level("INFO")
    collector = HostCollector("sut", sysfs_root=tmp_path)
    assert collector.rapl == []
    assert "no readable RAPL zones" in caplog.text
    assert not [s for s in collector.sample(1) if s.metric == schema.HOST_RAPL_ENERGY]


def test_a_failing_source_is_left_out_said_once_and_the_others_go_on(tmp_path, caplog):
    package = make_zone(tmp_path, "intel-rapl:0", "package-0", 2_000_000, max_uj=10_000_000)
    make_zone(tmp_path, "intel-rapl:1", "package-1", 3_000_000, max_uj=10_000_000)
    proc = tmp_path / "proc"  # a /proc with network counters and no /proc/diskstats
    write_net_dev(proc, {"eth0": (10, 20)})
    collector = HostCollector("sut", sysfs_root=tmp_path, procfs_root=proc)
    (package / "energy_uj").unlink()  # the zone vanishes after start-up; the kernel fails reads of its open file
    next(z for z in collector.rapl if z.name == "package-0").energy_file.close()  # (ENODEV: see the next test)
    caplog.set_level("WARNING")
    for tick in (1, 2):
        metrics = {s.metric for s in collector.sample(tick)}
        assert schema.HOST_DISK_READ not in metrics
        assert {schema.HOST_CPU_UTILIZATION, schema.HOST_MEMORY_TOTAL, schema.HOST_NET_RECEIVED} <= metrics
        rapl = {s.labels["zone"]: s.value for s in collector.sample(tick) if s.metric == schema.HOST_RAPL_ENERGY}
        assert rapl == {"package-1": pytest.approx(3.0)}
    assert caplog.text.count("host disk not readable") == 1
    assert caplog.text.count("host RAPL zone package-0 not readable") == 1
    (package / "energy_uj").write_text("2500000\n")
    rapl = {s.labels["zone"]: s.value for s in collector.sample(3) if s.metric == schema.HOST_RAPL_ENERGY}
    assert rapl["package-0"] == pytest.approx(2.5)
    assert "host RAPL zone package-0 readable again" in caplog.text


def test_a_kernel_file_is_read_anew_and_a_vanished_one_opened_again():
    status = KernelFile("/proc/self/status")
    def rss_kib() -> int:
        return int(next(line for line in status.read().splitlines() if line.startswith(b"VmRSS:")).split()[1])
    before = rss_kib()
    touched = bytearray(64 * 2**20)  # 64 MiB written with zeros: resident
    assert rss_kib() - before >= 60 * 1024  # the same open file read again says what the kernel says now
    del touched
    status.close()
    ended, ids = threading.Event(), []
    thread = threading.Thread(target=lambda: (ids.append(threading.get_native_id()), ended.wait(60)), daemon=True)
    thread.start()
    try:
        while not ids:
            pass
        stat = KernelFile(f"/proc/self/task/{ids[0]}/stat")
        assert stat.read().startswith(f"{ids[0]} (".encode())
    finally:
        ended.set()
    thread.join()
    deadline = time.monotonic() + 30
    while os.path.exists(stat.path) and time.monotonic() < deadline:  # the kernel removes the ended thread
        pass
    with pytest.raises(ProcessLookupError):  # its open file reads ESRCH (as a removed sysfs file reads ENODEV)
        stat.read()
    with pytest.raises(FileNotFoundError):  # the next read opened the path again, not the dead file
        stat.read()


def test_closing_the_collector_closes_every_file_it_holds(tmp_path, monkeypatch):
    def held() -> list[str]:
        """The files under tmp_path this process has open."""
        paths = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                paths.append(os.readlink(f"/proc/self/fd/{fd}"))
            except FileNotFoundError:  # the descriptor listdir read the folder with, closed since
                pass
        return [path for path in paths if path.startswith(str(tmp_path))]
    make_zone(tmp_path, "intel-rapl:0", "package-0", 2_000_000, max_uj=10_000_000)
    make_zone(tmp_path, "intel-rapl:1", "package-1", 3_000_000, max_uj=10_000_000)
    make_zone(tmp_path, "intel-rapl:2", "package-2", "n/a")  # skipped at the start: not left open either
    proc = tmp_path / "proc"
    write_net_dev(proc, {"eth0": (10, 20)})
    write_diskstats(proc, {"sda": 1000})
    write_meminfo(proc, MemTotal=1000, MemAvailable=600, SwapTotal=500, SwapFree=200)
    write_proc_stat(proc, [{"user": 1, "idle": 1}])
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        collector = HostCollector("sut", sysfs_root=tmp_path, procfs_root=proc)
    assert [zone.name for zone in collector.rapl] == ["package-0", "package-1"]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]  # (an unclosed file says so)
    collector.sample(1)
    assert sorted(Path(path).name for path in held()) == ["dev", "diskstats", "energy_uj", "energy_uj", "meminfo"]
    collector.close()
    assert held() == []


def test_host_samples_cover_the_method_indicators(tmp_path):
    make_zone(tmp_path, "intel-rapl:0", "package-0", 2_000_000, max_uj=10_000_000)
    samples = HostCollector("sut", sysfs_root=tmp_path).sample(123)
    by_metric = {}
    for s in samples:
        assert s.labels["host"] == "sut" and s.ts_ns == 123
        by_metric.setdefault(s.metric, []).append(s)
    cpu = {s.labels["cpu"]: s.value for s in by_metric[schema.HOST_CPU_UTILIZATION]}
    assert set(cpu) == set(map(str, range(psutil.cpu_count())))  # per core only: the total has its own name
    assert all(0.0 <= v <= 1.0 for v in cpu.values())
    [total] = by_metric[schema.HOST_CPU_TOTAL_UTILIZATION]
    assert total.labels == {"host": "sut"} and 0.0 <= total.value <= 1.0
    assert by_metric[schema.HOST_MEMORY_TOTAL][0].value == psutil.virtual_memory().total
    assert {s.labels["period"] for s in by_metric[schema.HOST_LOAD]} == {"1m", "5m", "15m"}
    assert by_metric[schema.HOST_NET_RECEIVED] and by_metric[schema.HOST_DISK_READ]
    assert by_metric[schema.HOST_RAPL_ENERGY][0].value == pytest.approx(2.0)
    assert set(by_metric) <= set(schema.METRICS)


def write_proc_stat(proc, cores: list[dict[str, int]]) -> None:
    """A /proc/stat with these per-core counters (clock ticks) and their sum as the whole machine's line."""
    modes = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")

    def line(name, counters):
        return " ".join([name] + [str(counters.get(mode, 0)) for mode in modes])

    total = {mode: sum(core.get(mode, 0) for core in cores) for mode in modes}
    (proc / "stat").write_text("\n".join([line("cpu ", total)] + [line(f"cpu{i}", c) for i, c in enumerate(cores)]
                                         + ["intr 0", "ctxt 0", "btime 0", ""]))


def test_cpu_ratios_are_the_busy_share_of_the_counters_since_the_last_tick(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))  # psutil's own parsing, on fixture counters
    write_proc_stat(proc, [{"user": 500, "system": 250, "idle": 4000, "iowait": 250},
                           {"user": 500, "system": 250, "idle": 4000, "iowait": 250}])
    collector = HostCollector("sut", sysfs_root=tmp_path)  # takes the first counters as its reference
    write_proc_stat(proc, [{"user": 800, "system": 350, "idle": 4500, "iowait": 350},   # +300 +100 +500 +100
                           {"user": 550, "system": 250, "idle": 4900, "iowait": 300}])  # +50 +0 +900 +50
    samples = collector.sample(123)
    # busy = total − idle − iowait: core 0 (300 + 100) / 1000 = 0.4, core 1 50 / 1000 = 0.05,
    # the machine (400 + 50) / 2000 = 0.225
    [total] = [s.value for s in samples if s.metric == schema.HOST_CPU_TOTAL_UTILIZATION]
    assert total == pytest.approx(0.225, abs=1e-9)
    per_core = {s.labels["cpu"]: s.value for s in samples if s.metric == schema.HOST_CPU_UTILIZATION}
    assert per_core == {"0": pytest.approx(0.4, abs=1e-9), "1": pytest.approx(0.05, abs=1e-9)}
    # the counters in seconds: clock ticks / USER_HZ (core 0's user: 800 ticks)
    seconds = {(s.labels["cpu"], s.labels["mode"]): s.value for s in samples if s.metric == schema.HOST_CPU_SECONDS}
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    assert seconds[("0", "user")] == pytest.approx(800 / ticks_per_s)
    assert seconds[("1", "idle")] == pytest.approx(4900 / ticks_per_s)
    assert seconds[("1", "system")] == pytest.approx(250 / ticks_per_s)


def test_cpu_ratios_come_from_one_read_of_the_counters_with_psutils_rounding_and_clamping(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))
    write_proc_stat(proc, [{"user": 1000, "nice": 10, "system": 300, "idle": 8000, "iowait": 100, "guest": 200},
                           {"user": 100, "system": 100, "idle": 9000, "iowait": 500}])
    collector = HostCollector("sut", sysfs_root=tmp_path)
    reads = []
    real_cpu_times = psutil.cpu_times
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: reads.append(percpu) or real_cpu_times(percpu))
    monkeypatch.setattr(psutil, "cpu_percent", lambda *a, **k: pytest.fail("a second read of /proc/stat"))
    # core 0: user +333, nice +1, system +0, idle +665, iowait +0, guest +100 (inside user: not counted again)
    # core 1: idle steps back 9000 -> 8990 (counted 0, as psutil does), user +7, iowait +3
    write_proc_stat(proc, [{"user": 1333, "nice": 11, "system": 300, "idle": 8665, "iowait": 100, "guest": 300},
                           {"user": 107, "system": 100, "idle": 8990, "iowait": 503}])
    samples = collector.sample(123)
    assert reads == [True]  # one read per tick: utilisation and the per-mode counters
    # core 0: elapsed 333 + 1 + 665 = 999 ticks, busy 334: 33.4334 % -> 33.4 %
    # core 1: elapsed 7 + 0 + 3 = 10 ticks, busy 7: 70.0 %
    # machine: elapsed 1009, busy 341: 33.79583 % -> 33.8 % (psutil.cpu_percent(), from the kernel's sum line,
    # says 34.1 %: there core 1's idle step back cancels 10 ticks of core 0's idle; per core they agree)
    per_core = {s.labels["cpu"]: s.value for s in samples if s.metric == schema.HOST_CPU_UTILIZATION}
    assert per_core == {"0": pytest.approx(0.334, abs=1e-12), "1": pytest.approx(0.7, abs=1e-12)}
    [total] = [s.value for s in samples if s.metric == schema.HOST_CPU_TOTAL_UTILIZATION]
    assert total == pytest.approx(0.338, abs=1e-12)
    # no time passed since the last tick: 0, as psutil says
    assert [s.value for s in collector.sample(124) if s.metric == schema.HOST_CPU_TOTAL_UTILIZATION] == [0.0]


# --- disks: whole disks only, so a sum over devices counts each byte once ------------------------------

def make_block(root, devices: dict[str, list[str]]):
    """/sys/block as the kernel lays it out: one entry per whole disk or stacked device, with its slaves."""
    for name, slaves in devices.items():
        (root / "block" / name / "slaves").mkdir(parents=True)
        for slave in slaves:
            (root / "block" / name / "slaves" / slave).touch()


def write_diskstats(proc, sectors_read: dict[str, int]) -> None:
    """/proc/diskstats (kernel 5.5's 20 fields) with each device's sectors read, and twice that written."""
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "diskstats").write_text("".join(
        f"   8 {minor:7d} {name} 11 3 {n} 40 22 5 {2 * n} 60 0 70 100 0 0 0 0 4 8\n"
        for minor, (name, n) in enumerate(sectors_read.items())))


def write_net_dev(proc, counters: dict[str, tuple[int, int]]) -> None:
    """/proc/net/dev with each interface's bytes received and sent."""
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls"
        " carrier compressed\n"
        + "".join(f"{name:>6}: {rx} 7 0 0 0 0 0 0 {tx} 9 0 0 0 0 0 0\n" for name, (rx, tx) in counters.items()))


def disk_collector(tmp_path, sectors_read: dict[str, int], **options) -> HostCollector:
    write_diskstats(tmp_path / "proc", sectors_read)
    return HostCollector("sut", procfs_root=tmp_path / "proc", **{"sysfs_root": tmp_path, **options})


# sda holds sda1 (600 sectors read) and sda2 (400, under LVM as dm-0); nvme0n1 read 50 through its partition
READ = {"sda": 1000, "sda1": 600, "sda2": 400, "dm-0": 400, "nvme0n1": 50, "nvme0n1p1": 50, "loop0": 7,
        "zram0": 9}


def disk_samples(collector) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in collector.sample(1):
        if s.metric in (schema.HOST_DISK_READ, schema.HOST_DISK_WRITTEN):
            out.setdefault(s.metric, {})[s.labels["device"]] = s.value
    return out


def test_disk_bytes_are_whole_disks_only_so_their_sum_counts_each_byte_once(tmp_path):
    make_block(tmp_path, {"sda": [], "nvme0n1": [], "dm-0": ["sda2"], "loop0": [], "zram0": []})
    assert whole_disks(tmp_path) == {"sda", "nvme0n1", "loop0", "zram0"}  # dm-0 sits on sda2
    got = disk_samples(disk_collector(tmp_path, READ))
    assert got[schema.HOST_DISK_READ] == {"sda": 1000 * 512, "nvme0n1": 50 * 512}  # 512-byte sectors
    assert sum(got[schema.HOST_DISK_READ].values()) == 1050 * 512  # 1000 + 50; every device would give 2450
    assert sum(got[schema.HOST_DISK_WRITTEN].values()) == 2100 * 512  # 2 × 1050

    # without /sys/block: partitions and stacked devices by name, as node_exporter's device-exclude does
    got = disk_samples(disk_collector(tmp_path, READ, sysfs_root=tmp_path / "nothing"))
    assert got[schema.HOST_DISK_READ] == {"sda": 1000 * 512, "nvme0n1": 50 * 512}

    # --disk-devices all: every block device but the pseudo ones, for a per-device view
    got = disk_samples(disk_collector(tmp_path, READ, disk_devices="all"))
    assert set(got[schema.HOST_DISK_READ]) == {"sda", "sda1", "sda2", "dm-0", "nvme0n1", "nvme0n1p1"}


def test_disk_devices_of_this_machine_are_its_whole_disks():
    disks = whole_disks()
    expected = {d for d in psutil.disk_io_counters(perdisk=True) if d in disks and not d.startswith(
        ("loop", "ram", "zram"))}
    got = disk_samples(HostCollector("sut"))
    assert set(got.get(schema.HOST_DISK_READ, {})) == expected
# --- CPU time as counters -----------------------------------------------------------------------------------
S = 10**9


def test_cpu_time_is_published_per_core_and_mode_as_counters_that_never_go_back(tmp_path, monkeypatch):
    collector = HostCollector("sut", sysfs_root=tmp_path)
    first = [s for s in collector.sample(1) if s.metric == schema.HOST_CPU_SECONDS]
    cores = {s.labels["cpu"] for s in first}
    assert cores == set(map(str, range(psutil.cpu_count())))
    modes = {s.labels["mode"] for s in first}
    assert {"user", "system", "idle"} <= modes <= set(CPU_MODES)  # no guest: Linux counts it inside user
    # Linux's idle can step back a little: a counter never goes below what it said
    real_cpu_times = psutil.cpu_times
    stepped_back = [core._replace(idle=core.idle - 5.0) for core in real_cpu_times(percpu=True)]
    monkeypatch.setattr(psutil, "cpu_times", lambda percpu=False: stepped_back if percpu else real_cpu_times())
    second = {(s.labels["cpu"], s.labels["mode"]): s.value for s in collector.sample(2)
              if s.metric == schema.HOST_CPU_SECONDS}
    assert len(second) == len(first)
    for s in first:
        assert second[(s.labels["cpu"], s.labels["mode"])] >= s.value
    assert all(second[(core, "idle")] == idle for (core, mode), idle in
               {(s.labels["cpu"], s.labels["mode"]): s.value for s in first}.items() if mode == "idle")


def cpu_store(path, counters: bool = True, gauge: bool = True) -> None:
    """A 2-core host whose exporter ticks every second but which Prometheus scraped only every 15 s.

    Busy share b of each 1-s tick (t, t+1]: in [0, 30) 1.0 when t % 5 == 0, else 0.2; in [30, 60) 0.5. Each core
    spends b in user (70 %) and system (30 %), 1 − b in idle (90 %) and iowait (10 %), so the modes add to 1 s.
    The gauge holds the busy share of the last tick before the scrape, as host_cpu_utilization_ratio does.
    """
    def busy(t: int) -> float:
        return (1.0 if t % 5 == 0 else 0.2) if t < 30 else 0.5

    shares = {"user": lambda b: 0.7 * b, "system": lambda b: 0.3 * b, "idle": lambda b: 0.9 * (1 - b),
              "iowait": lambda b: 0.1 * (1 - b)}
    totals = {(core, mode): 1000.0 for core in ("0", "1") for mode in shares}  # seconds since boot
    samples = []
    for t in range(61):
        if t % 15 == 0:  # a scrape
            if counters:
                samples += [Sample(schema.HOST_CPU_SECONDS, {"host": "h", "cpu": core, "mode": mode}, value, t * S)
                            for (core, mode), value in totals.items()]
            if gauge:
                samples.append(Sample(schema.HOST_CPU_UTILIZATION, {"host": "h", "cpu": "total"},
                                      busy(t - 1) if t else 0.0, t * S))
        for (core, mode) in totals:
            totals[(core, mode)] += shares[mode](busy(t))
    events = [Event("c", "x", 1, "run", 0, 60 * S), Event("c", "x", 1, "first", 0, 30 * S),
              Event("c", "x", 1, "second", 30 * S, 60 * S), Event("c", "x", 1, "middle", 15 * S, 45 * S)]
    with Store(path) as store:
        store.write(samples)
        store.write_events(events)


def test_window_cpu_utilisation_comes_from_the_counters_whatever_the_scrape_interval(tmp_path):
    cpu_store(tmp_path / "s.db")
    with Store(tmp_path / "s.db") as store:
        windows = analyze_campaign(store, "c").windows.set_index("action")
    # first half: 6 ticks busy 1.0 (t = 0, 5, ..., 25) and 24 at 0.2: (6 × 1.0 + 24 × 0.2) / 30 = 10.8 / 30 = 0.36
    assert windows.loc["first", "cpu_utilization"] == pytest.approx(0.36)
    assert windows.loc["second", "cpu_utilization"] == pytest.approx(0.5)  # every tick 0.5
    assert windows.loc["run", "cpu_utilization"] == pytest.approx((10.8 + 15) / 60)  # 0.43
    # [15, 45): ticks 15..29 hold 3 busy (15, 20, 25) and 12 at 0.2 = 5.4 s, ticks 30..44 hold 15 × 0.5 = 7.5 s
    assert windows.loc["middle", "cpu_utilization"] == pytest.approx((5.4 + 7.5) / 30)  # 0.43


def test_the_gauge_stays_the_fallback_for_data_without_counters(tmp_path):
    cpu_store(tmp_path / "s.db", counters=False)
    with Store(tmp_path / "s.db") as store:
        windows = analyze_campaign(store, "c").windows.set_index("action")
    # only the scrapes' last ticks: t = 0 (0.0), 14 (0.2), 29 (0.2) in [0, 30]: a sample, not the mean 0.36
    assert windows.loc["first", "cpu_utilization"] == pytest.approx((0.0 + 0.2 + 0.2) / 3)


def test_the_whole_disks_are_read_again_only_when_the_device_list_changes(tmp_path, monkeypatch):
    real_whole_disks = whole_disks
    make_block(tmp_path, {"sda": [], "dm-0": ["sda2"]})
    reads = []
    monkeypatch.setattr(host, "whole_disks", lambda root: reads.append(root) or real_whole_disks(root))
    counters = {"sda": 1000, "sda1": 600, "sda2": 400, "dm-0": 400}
    collector = disk_collector(tmp_path, counters)
    for _ in range(3):
        assert disk_samples(collector)[schema.HOST_DISK_READ] == {"sda": 1000 * 512}
    assert len(reads) == 1  # three ticks, one look at /sys/block
    make_block(tmp_path, {"sdb": []})  # a disk plugged in: /proc/diskstats lists it, /sys/block is read again
    write_diskstats(tmp_path / "proc", {**counters, "sdb": 70})
    assert disk_samples(collector)[schema.HOST_DISK_READ] == {"sda": 1000 * 512, "sdb": 70 * 512}
    assert len(reads) == 2


def write_meminfo(proc, **kib: int) -> None:
    (proc / "vmstat").write_text("pswpin 0\npswpout 0\n")  # psutil's swap_memory() reads it too
    (proc / "meminfo").write_text("".join(f"{name}: {value:>8} kB\n" for name, value in kib.items()))


def test_memory_and_swap_are_psutils_numbers_from_one_read_of_meminfo(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    proc.mkdir()
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))
    write_meminfo(proc, MemTotal=1000, MemFree=100, MemAvailable=600, Buffers=10, Cached=200, SwapTotal=500,
                  SwapFree=200)
    # in bytes: 1000 × 1024 = 1,024,000 total, 600 × 1024 = 614,400 available, (500 − 200) × 1024 = 307,200 swap
    meminfo = (proc / "meminfo").read_bytes()
    assert memory_and_swap(meminfo) == (1_024_000, 614_400, 307_200)
    assert memory_and_swap(meminfo) == (psutil.virtual_memory().total, psutil.virtual_memory().available,
                                        psutil.swap_memory().used)
    write_proc_stat(proc, [{"user": 1, "idle": 1}])  # the collector primes its CPU ratios
    memory = {s.metric: s.value for s in HostCollector("sut", sysfs_root=tmp_path)._memory(1)}
    assert memory[schema.HOST_MEMORY_USED] == 1_024_000 - 614_400
    # MemAvailable above MemTotal (a broken kernel) and no swap lines: psutil's own fallbacks answer
    write_meminfo(proc, MemTotal=1000, MemFree=100, MemAvailable=5000, Buffers=10, Cached=200)
    total, available, swap_used = memory_and_swap((proc / "meminfo").read_bytes())
    assert (total, available) == (1_024_000, psutil.virtual_memory().available) and available == 102_400  # MemFree
    assert swap_used == psutil.swap_memory().used


def test_a_disk_counter_that_goes_back_is_published_as_a_reset_and_the_analysis_counts_what_came_after(tmp_path):
    # sda read 1000 sectors, then was re-added and has read 100 since: the kernel says 1000, then 100. Published as
    # the kernel says it is a reset, which increases() undoes: 100 sectors in the window from the first tick to the
    # second (psutil's nowrap=True would have published 1000, 1100: the same increase, at a cost every tick).
    import numpy as np

    from mltelemetry.analysis.energy import increases

    collector = disk_collector(tmp_path, {"sda": 1000}, sysfs_root=Path("/nonexistent"))
    read = []
    for t, sectors in ((1_000_000_000, 1000), (2_000_000_000, 100)):
        write_diskstats(tmp_path / "proc", {"sda": sectors})
        read += [next(s.value for s in collector.sample(t) if s.metric == schema.HOST_DISK_READ
                      and s.labels["device"] == "sda")]
    assert read == [512_000.0, 51_200.0]
    window = increases(np.array([1, 2]) * 10**9, np.array(read), np.array([10**9]), np.array([2 * 10**9]))
    assert window.tolist() == [51_200.0]


def test_disk_and_network_bytes_are_psutils_numbers_from_the_same_files(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    write_diskstats(proc, {"sda": 1000, "nvme0n1": 3, "loop0": 7})
    with open(proc / "diskstats", "a") as f:  # kernels 4.18–5.4 write 18 fields, older ones 14
        f.write("   8      32 sdc 1 2 40 4 5 6 80 8 0 10 11 12 13 14 15\n   8      48 sdd 1 2 60 4 5 6 90 8 0 10 11\n")
    write_net_dev(proc, {"lo": (5, 5), "eth0": (123_456_789_012, 42), "wlp2s0": (0, 7)})
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))
    expected = {name: (io.read_bytes, io.write_bytes)
                for name, io in psutil.disk_io_counters(perdisk=True, nowrap=False).items()}
    assert host.disk_bytes((proc / "diskstats").read_bytes()) == expected
    assert expected["sda"] == (512_000, 1_024_000) and expected["sdd"] == (30_720, 46_080)  # 60 and 90 sectors
    expected = {name: (io.bytes_recv, io.bytes_sent)
                for name, io in psutil.net_io_counters(pernic=True, nowrap=False).items()}
    got = host.network_bytes((proc / "net" / "dev").read_bytes())
    assert got == expected and expected["eth0"] == (123_456_789_012, 42)
