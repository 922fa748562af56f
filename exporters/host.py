"""Host exporter: what collectl gave the method (CPU, memory, disk, network), plus load, swap and RAPL."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Literal

import psutil
import typer

from mltelemetry import schema
from mltelemetry.cliutil import (
    DEFAULT_HOST,
    HostLabel,
    Interval,
    Listen,
    SinkOptions,
    StorePath,
    one_line_errors,
    with_sink_options,
)
from mltelemetry.exporters.counters import MonotonicCounter
from mltelemetry.schema import Sample

log = logging.getLogger(__name__)

# Pseudo block devices whose traffic is not the SUT's disk activity.
_SKIPPED_DISK_PREFIXES = ("loop", "ram", "zram")
# Where /sys/block cannot be read: partitions and stacked devices by name (node_exporter's default
# --collector.diskstats.device-exclude, plus mmcblk partitions, device-mapper and md devices).
_NOT_WHOLE_DISK = re.compile(r"^((h|s|v|xv)d[a-z]+|nvme\d+n\d+p|mmcblk\d+p)\d+$|^(dm|md)-?\d+$")
DiskDevices = Literal["whole", "all"]


def whole_disks(sysfs_root: Path = Path("/sys")) -> set[str] | None:
    """Names of the whole disks: the devices in ``/sys/block`` (partitions live below their disk there) that sit
    on no other device (``slaves/`` empty: not device-mapper, md or bcache over a disk counted already).
    None where ``/sys/block`` cannot be read."""
    try:
        devices = list((sysfs_root / "block").iterdir())
    except OSError:
        return None
    disks = set()
    for device in devices:
        slaves = device / "slaves"
        if not (slaves.is_dir() and any(slaves.iterdir())):
            disks.add(device.name.replace("!", "/"))  # sysfs writes cciss/c0d0 as cciss!c0d0
    return disks
_SKIPPED_INTERFACES = ("lo",)


class KernelFile:
    """A /proc or /sys file kept open and read again from its start at each tick: the kernel makes its text anew
    for every read from the start. Not opening and closing the file each time saves ≈ 20 µs a read here; with the
    text parsed from one read (not line by line) the host collector's tick went 425 → 300 µs (bench/overhead.md).
    A read that fails closes the file; the next read opens the path again."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._file: io.FileIO | None = None

    def read(self) -> bytes:
        try:
            if self._file is None:
                self._file = io.FileIO(self.path)
            self._file.seek(0)
            return self._file.readall()
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class RaplZone:
    """One powercap zone's energy counter, made monotonic across wrap-around (``max_energy_range_uj``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = (path / "name").read_text().strip()
        self.max_range_uj = int((path / "max_energy_range_uj").read_text())
        self._counter_uj = MonotonicCounter(wrap_at=self.max_range_uj)  # whole µJ: the sum stays exact
        self.energy_file = KernelFile(path / "energy_uj")
        try:
            self.total_j = self._counter_uj.add(self._read_uj()) / 1e6
        except ValueError:  # not a number: the zone is skipped, its file not left open
            self.energy_file.close()
            raise

    def _read_uj(self) -> int:
        return int(self.energy_file.read())

    def read_joules(self) -> float:
        self.total_j = self._counter_uj.add(self._read_uj()) / 1e6
        return self.total_j


def find_rapl_zones(sysfs_root: Path = Path("/sys")) -> list[RaplZone]:
    """Readable RAPL zones (packages and their sub-zones); empty where there are none or none is readable."""
    powercap = sysfs_root / "class" / "powercap"
    zones, names = [], {}
    for path in sorted(powercap.glob("intel-rapl:*")):
        try:
            zone = RaplZone(path)
        except (OSError, ValueError) as e:
            log.info("RAPL zone %s not readable (%s); skipping it", path.name, e)
            continue
        # Sub-zones share names across packages ("core" under each package): qualify them.
        key = zone.name if zone.name not in names else f"{zone.name}-{path.name}"
        names[key] = path
        zone.name = key
        zones.append(zone)
    return zones


_MEMINFO_FIELDS = frozenset({b"MemTotal:", b"MemAvailable:", b"SwapTotal:", b"SwapFree:"})


def memory_and_swap(meminfo: bytes) -> tuple[int, int, int]:
    """Total and available memory and used swap in bytes, as psutil's ``virtual_memory()`` and ``swap_memory()``
    give them, from one read of /proc/meminfo (those two read it twice, and /proc/vmstat, for fields we do not
    publish). Where meminfo lacks a field or holds an odd value psutil's own fallbacks answer."""
    fields = {}
    for line in meminfo.splitlines():
        name, value = line.split()[:2]
        if name in _MEMINFO_FIELDS:
            fields[name] = int(value) * 1024
            if len(fields) == len(_MEMINFO_FIELDS):
                break  # the swap lines come a third of the way down: the rest is not published
    total, available = fields[b"MemTotal:"], fields.get(b"MemAvailable:", 0)
    if not 0 < available <= total:  # old kernels without MemAvailable: psutil estimates it
        available = psutil.virtual_memory().available
    if b"SwapTotal:" in fields and b"SwapFree:" in fields:
        swap_used = fields[b"SwapTotal:"] - fields[b"SwapFree:"]
    else:
        swap_used = psutil.swap_memory().used
    return total, available, swap_used


# Disk and network counters are read from /proc here rather than through psutil's disk_io_counters and
# net_io_counters (same files, same numbers: tests/unit/test_host.py compares them on fixtures): psutil builds a
# named tuple of every counter of every device, which cost ≈ 0.25 and 0.14 ms more per tick of an exporter
# ticking once a second (bench/overhead.md).
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's own sector size


def disk_bytes(diskstats: bytes) -> dict[str, tuple[int, int]]:
    """Bytes read and written per block device since boot, from /proc/diskstats (lines of 14 fields and more:
    kernels since 2.6.25)."""
    out = {}
    for line in diskstats.splitlines():
        fields = line.split()
        if len(fields) >= 14:
            out[fields[2].decode()] = (int(fields[5]) * SECTOR_BYTES, int(fields[9]) * SECTOR_BYTES)
    return out


def network_bytes(net_dev: bytes) -> dict[str, tuple[int, int]]:
    """Bytes received and sent per network interface, from /proc/net/dev."""
    out = {}
    for line in net_dev.splitlines()[2:]:  # two lines of column names
        name, _, counters = line.rpartition(b":")
        fields = counters.split()
        out[name.strip().decode()] = (int(fields[0]), int(fields[8]))
    return out


# CPU modes published as host_cpu_seconds_total (those psutil has on this platform). Linux counts guest and
# guest_nice inside user and nice already, so they are left out: the modes of a core sum to its elapsed time.
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_time_deltas(before, after) -> dict[str, float]:
    """Seconds per mode between two ``psutil.cpu_times()`` readings; a counter that stepped back counts 0 (as
    psutil.cpu_percent does)."""
    return {mode: max(0.0, new - old) for mode, old, new in zip(after._fields, before, after)}


def busy_share(deltas: dict[str, float]) -> float:
    """psutil.cpu_percent's number as a ratio: busy / elapsed, rounded to 0.1 %, 0 when no time passed. Linux counts
    guest time inside user and nice, so it is not added again; idle and iowait are not busy."""
    elapsed = sum(deltas.values()) - deltas.get("guest", 0.0) - deltas.get("guest_nice", 0.0)
    busy = elapsed - deltas.get("idle", 0.0) - deltas.get("iowait", 0.0)
    return round(busy / elapsed * 100, 1) / 100 if elapsed else 0.0


# The host exporter writes its store every 5 ticks at 1 s: one SQLite transaction for 5 s of samples instead of 5
# (less CPU, and fewer pages written to the disk it measures). A SIGKILL loses at most those 5 s; SIGTERM and SIGINT
# write everything. The other exporters write every second (the cooldown reads GPU temperatures from the store).
STORE_FLUSH_S = 4.5


class HostCollector:
    """Samples psutil's counters and gauges and RAPL where readable."""

    name = "host"

    def __init__(self, host: str, sysfs_root: Path = Path("/sys"), disk_devices: DiskDevices = "whole",
                 procfs_root: Path = Path("/proc")) -> None:
        self.host = host
        self.sysfs_root = sysfs_root
        self._meminfo = KernelFile(f"{psutil.PROCFS_PATH}/meminfo")
        self._diskstats = KernelFile(procfs_root / "diskstats")  # procfs_root: where disks and network are read
        self._net_dev = KernelFile(procfs_root / "net" / "dev")
        self.disk_devices = disk_devices
        self.rapl = find_rapl_zones(sysfs_root)
        if not self.rapl:
            log.info("no readable RAPL zones under %s/class/powercap: CPU energy will not be recorded",
                     sysfs_root)
        self._failing: set[str] = set()  # sources whose failure was said, until they read again
        # The whole disks among the devices /proc/diskstats listed last: /sys/block is read again only when that list
        # changes (a disk, partition or device-mapper device came or went), not every tick.
        self._disks_of: tuple[frozenset[str], set[str] | None] | None = None
        self._label_dicts: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        # the last CPU time published per core and mode, and the series' labels
        self._cpu_seconds: dict[tuple[int, str], tuple[float, dict[str, str]]] = {}
        self._cpu_modes = [mode for mode in psutil.cpu_times()._fields if mode in CPU_MODES]  # in psutil's order
        self._last_cpu_times = psutil.cpu_times(percpu=True)  # the first tick's utilisation is since now

    def sample(self, ts_ns: int) -> list[Sample]:
        """Every source on its own: one that fails (said once) leaves this tick's others standing."""
        samples: list[Sample] = []
        sources: list[tuple[str, Callable[[], list[Sample]]]] = [
            ("CPU", partial(self._cpu, ts_ns)),
            ("memory", partial(self._memory, ts_ns)),
            ("load", partial(self._load, ts_ns)), ("disk", partial(self._disk, ts_ns)),
            ("network", partial(self._network, ts_ns)),
        ]
        sources += [(f"RAPL zone {zone.name}", partial(self._rapl, zone, ts_ns)) for zone in self.rapl]
        for source, read in sources:
            try:
                samples += read()
            except Exception as e:  # noqa: BLE001 - one source's failure is not the others'
                if source not in self._failing:
                    self._failing.add(source)
                    log.warning("host %s not readable (%s: %s); left out while it fails, the rest goes on",
                                source, type(e).__name__, e)
                continue
            if source in self._failing:
                self._failing.discard(source)
                log.warning("host %s readable again", source)
        return samples

    def _s(self, metric: str, value: float, ts_ns: int, **labels: str) -> Sample:
        return Sample(metric, self._labels(**labels), float(value), ts_ns)

    def _labels(self, **labels: str) -> dict[str, str]:
        """A series' labels, made once and the same dict every tick after (no sink changes a sample's labels)."""
        key = tuple(labels.items())
        made = self._label_dicts.get(key)
        if made is None:
            made = self._label_dicts[key] = {"host": self.host, **labels}
        return made

    def _cpu(self, ts_ns: int) -> list[Sample]:
        """Utilisation since the last tick (per core and the machine's) and CPU time per core and mode, from one
        read of the per-core counters (psutil.cpu_percent would read /proc/stat twice more)."""
        times = psutil.cpu_times(percpu=True)
        before, self._last_cpu_times = self._last_cpu_times, times
        deltas = [cpu_time_deltas(t1, t2) for t1, t2 in zip(before, times)]
        # The machine's share from the sum of the cores' deltas: the counters published below, where psutil
        # reads the kernel's sum line (the same counters, rounded to a clock tick once instead of per core).
        machine = {mode: sum(core[mode] for core in deltas) for mode in deltas[0]} if deltas else {}
        s = self._s
        return [s(schema.HOST_CPU_TOTAL_UTILIZATION, busy_share(machine), ts_ns),
                *(s(schema.HOST_CPU_UTILIZATION, busy_share(core), ts_ns, cpu=str(i)) for i, core in enumerate(deltas)),
                *self._cpu_time(times, ts_ns)]

    def _cpu_time(self, cores: list, ts_ns: int) -> list[Sample]:
        """CPU time per core and mode as counters: what a window's mean utilisation is computed from (the gauge
        above holds only the last tick's busy share: a scrape every 15 s keeps one tick of 15)."""
        times, published = [], self._cpu_seconds
        for i, core in enumerate(cores):
            for mode in self._cpu_modes:
                # Linux's idle and iowait can step back a little (NO_HZ accounting): the analysis would read
                # a drop as a restart, so a counter never goes below what it said (as node_exporter does)
                last, labels = published.get((i, mode)) or (0.0, self._labels(cpu=str(i), mode=mode))
                seconds = max(getattr(core, mode), last)
                published[(i, mode)] = (seconds, labels)
                times.append(Sample(schema.HOST_CPU_SECONDS, labels, seconds, ts_ns))
        return times

    def _memory(self, ts_ns: int) -> list[Sample]:
        s = self._s
        total, available, swap_used = memory_and_swap(self._meminfo.read())
        return [
            s(schema.HOST_MEMORY_USED, total - available, ts_ns),
            s(schema.HOST_MEMORY_AVAILABLE, available, ts_ns),
            s(schema.HOST_MEMORY_TOTAL, total, ts_ns),
            s(schema.HOST_SWAP_USED, swap_used, ts_ns),
        ]

    def _load(self, ts_ns: int) -> list[Sample]:
        return [self._s(schema.HOST_LOAD, load, ts_ns, period=period)
                for period, load in zip(("1m", "5m", "15m"), psutil.getloadavg())]

    def _is_counted(self, device: str, disks: set[str] | None) -> bool:
        if device.startswith(_SKIPPED_DISK_PREFIXES):
            return False
        if self.disk_devices == "all":
            return True
        return device in disks if disks is not None else not _NOT_WHOLE_DISK.match(device)

    def _whole_disks(self, devices: frozenset[str]) -> set[str] | None:
        if self._disks_of is None or self._disks_of[0] != devices:
            self._disks_of = (devices, whole_disks(self.sysfs_root))
        return self._disks_of[1]

    def _disk(self, ts_ns: int) -> list[Sample]:
        """Bytes per device: whole disks only by default, so a sum over devices counts each byte once (the kernel
        lists partitions and device-mapper devices beside their disks).

        Disk and network counters are published as the kernel gives them: a counter that goes back (a device
        re-added) is a reset, which Prometheus' increase() and the analysis undo as for any restarted counter
        (psutil's ``nowrap`` correction would do the same arithmetic, at ≈ 0.15 ms a tick each)."""
        out = []
        counters = disk_bytes(self._diskstats.read())
        disks = self._whole_disks(frozenset(counters)) if self.disk_devices == "whole" else None
        for device, (read, written) in counters.items():
            if self._is_counted(device, disks):
                out += [self._s(schema.HOST_DISK_READ, read, ts_ns, device=device),
                        self._s(schema.HOST_DISK_WRITTEN, written, ts_ns, device=device)]
        return out

    def _network(self, ts_ns: int) -> list[Sample]:
        out = []
        for interface, (received, sent) in network_bytes(self._net_dev.read()).items():
            if interface not in _SKIPPED_INTERFACES:
                out += [self._s(schema.HOST_NET_RECEIVED, received, ts_ns, interface=interface),
                        self._s(schema.HOST_NET_TRANSMITTED, sent, ts_ns, interface=interface)]
        return out

    def _rapl(self, zone: RaplZone, ts_ns: int) -> list[Sample]:
        return [self._s(schema.HOST_RAPL_ENERGY, zone.read_joules(), ts_ns, zone=zone.name)]

    def close(self) -> None:
        for file in (self._meminfo, self._diskstats, self._net_dev, *(zone.energy_file for zone in self.rapl)):
            file.close()


@with_sink_options
@one_line_errors
def host_command(
    listen: Listen = "127.0.0.1:9810",
    store: StorePath = None,
    interval: Interval = 1.0,
    host_label: HostLabel = DEFAULT_HOST,
    sysfs: Path = Path("/sys"),
    disk_devices: Annotated[str, typer.Option(
        "--disk-devices", help="whole: whole disks only (what sums correctly; partitions, device-mapper and md "
        "devices left out); all: every block device (for a per-device view: do not sum those).")] = "whole",
    *, sink_options: SinkOptions,
) -> None:
    """Publish CPU, memory, disk, network, load, swap and RAPL energy of this machine."""
    from mltelemetry.exporters.runtime import exporter_sinks, serve

    if disk_devices not in ("whole", "all"):
        raise typer.BadParameter(f"--disk-devices takes whole or all, not {disk_devices!r}")
    collector = HostCollector(host_label, sysfs_root=sysfs, disk_devices=disk_devices)
    sinks = exporter_sinks(collector.name, listen=listen, store=str(store) if store else None, interval_s=interval,
                           options=sink_options, store_flush_s=STORE_FLUSH_S)
    serve(collector, sinks, interval_s=interval, host=host_label)
