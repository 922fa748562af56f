"""Shared test helpers: free ports and real servers (started on loopback, stopped after), and the two tiers.

tests/unit runs in memory (injected clocks, no process, pty, network or sleep: `make check`); tests/integration
runs the real parts (servers, ptys, processes, frameworks). `make test` runs both.
"""

from __future__ import annotations

import multiprocessing.process
import os
import pty
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

UNIT_TIER = Path(__file__).parent / "unit"


@pytest.fixture(autouse=True)
def unit_tests_stay_in_memory(request, monkeypatch):
    """Under tests/unit, starting a process, opening a pty or an IP socket, or sleeping fails the test at once:
    such a test belongs in tests/integration (or wants an injected clock)."""
    if UNIT_TIER not in request.node.path.parents:
        return

    def refuse(what: str) -> Callable:
        def refused(*args, **kwargs):
            pytest.fail(f"a unit test must not {what}: inject a clock or move the test to tests/integration")
        return refused

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("start a process"))
    monkeypatch.setattr(os, "fork", refuse("fork"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse("start a process"))
    monkeypatch.setattr(os, "openpty", refuse("open a pty"))
    monkeypatch.setattr(pty, "openpty", refuse("open a pty"))
    monkeypatch.setattr(time, "sleep", refuse("sleep"))
    for method in ("bind", "connect", "connect_ex"):
        real = getattr(socket.socket, method)

        def unix_only(self, *args, real=real, **kwargs):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                pytest.fail("a unit test must not use the network: move the test to tests/integration")
            return real(self, *args, **kwargs)
        monkeypatch.setattr(socket.socket, method, unix_only)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_binary(name: str) -> str:
    """The server binary's path. A missing server fails the test, in CI and elsewhere (`make test` installs it)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make test` installs it (apt-get install {name})")
    return path


def wait_for(condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.2):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = condition()
            if result:
                return result
        except (requests.RequestException, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


@pytest.fixture
def prometheus(tmp_path):
    """A real Prometheus server on a free loopback port; ``start(targets)`` launches it scraping every 1 s."""
    binary = require_binary("prometheus")
    processes: list[subprocess.Popen] = []

    def start(targets: list[str]) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          "scrape_configs:\n  - job_name: mltelemetry\n    static_configs:\n"
                          f"      - targets: {targets!r}\n")
        log = (tmp_path / "prometheus.log").open("wb")
        processes.append(subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).ok, 30, "Prometheus to be ready")
        return url

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=15)


def _start_server(tmp_path, name: str, args: list[str], ready_url: str, what: str) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is None and requests.get(ready_url, timeout=1).status_code < 300, 30, what)
    except BaseException:
        process.kill()
        raise
    return process


@pytest.fixture
def victoria_metrics(tmp_path):
    """A real VictoriaMetrics on a free loopback port; yields its base URL (Prometheus API, /api/v2/write)."""
    binary = require_binary("victoria-metrics")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start_server(tmp_path, "victoria-metrics",
                            [binary, f"-storageDataPath={tmp_path / 'vm-data'}", f"-httpListenAddr=127.0.0.1:{port}",
                             "-search.latencyOffset=0s", "-search.disableCache", "-influxSkipSingleField"],
                            f"{url}/health", "VictoriaMetrics to be ready")
    yield url
    process.terminate()
    process.wait(timeout=15)


def influxdb_config(tmp_path, http_port: int) -> str:
    """An InfluxDB 1.x config whose data lives under tmp_path and which listens on loopback only."""
    root = tmp_path / "influxdb"
    config = tmp_path / "influxdb.conf"
    config.write_text(f'''bind-address = "127.0.0.1:{free_port()}"
reporting-disabled = true
[meta]
  dir = "{root / 'meta'}"
[data]
  dir = "{root / 'data'}"
  wal-dir = "{root / 'wal'}"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
''')
    return str(config)


@pytest.fixture
def influxdb(tmp_path):
    """A real InfluxDB 1.x on a free loopback port; yields its base URL (v1 /write and /query)."""
    binary = require_binary("influxd")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start_server(tmp_path, "influxdb", [binary, "-config", influxdb_config(tmp_path, port)],
                            f"{url}/ping", "InfluxDB to be ready")
    yield url
    process.terminate()
    process.wait(timeout=15)


class RestartableInfluxdb:
    """An InfluxDB 1.x that a test can stop (terminate, data kept) and start again on the same port."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path, self.binary = tmp_path, require_binary("influxd")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = influxdb_config(tmp_path, self.port)  # one config: same ports and data dir every start
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = _start_server(self.tmp_path, "influxdb", [self.binary, "-config", self.config],
                                     f"{self.url}/ping", "InfluxDB to be ready")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


@pytest.fixture
def restartable_influxdb(tmp_path):
    """A started :class:`RestartableInfluxdb`; stopped after the test."""
    server = RestartableInfluxdb(tmp_path)
    server.start()
    yield server
    server.stop()


def ticks_on_deadlines(exporter, n: int, before_tick: Callable[[int], object] | None = None) -> list[dict]:
    """``n`` ticks of ``exporter`` every ``exporter.interval_s`` on absolute deadlines from now; ``before_tick(k)``
    runs just before tick ``k`` (inject a fault, unplug). Returns each tick's samples as {metric: value}."""
    start, ticks = time.monotonic(), []
    for k in range(n):
        time.sleep(max(0.0, start + k * exporter.interval_s - time.monotonic()))
        if before_tick:
            before_tick(k)
        ticks.append({s.metric: s.value for s in exporter.tick()})
    return ticks


@pytest.fixture
def small_fs(tmp_path):
    """A real 16 MiB filesystem (tmpfs) mounted for the test, to fill up with :func:`fill`; unmounted after.
    Mounting needs root (CI and the lab machines run the tests as root); elsewhere the test is skipped, but in CI
    (``CI=true``) a mount that fails fails the test, as a missing server does."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        why = f"cannot mount a small tmpfs here: {mounted.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte with a filler file; returns its path."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as e:
        assert e.errno == 28  # ENOSPC
    try:
        while True:  # the last partial block
            os.write(fd, b"\0")
    except OSError:
        pass
    os.close(fd)
    return filler
