"""The /metrics server: one render per tick, keep-alive, OpenMetrics units, build info, / and /healthz,
and staying up under connection pressure (backlog, idle and header timeouts, a connection cap)."""

from __future__ import annotations

import logging
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time

import requests

from conftest import free_port, require_binary, wait_for
from fakes.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step
from mltelemetry import __version__, schema
from mltelemetry.exporters.gpu import nvml
from mltelemetry.exporters.gpu.collector import GpuCollector
from mltelemetry.exporters.host import HostCollector
from mltelemetry.exporters.runtime import Exporter
from mltelemetry.httpserver import ServerLimits
from mltelemetry.schema import Sample
from mltelemetry.sinks import PrometheusSink, WebSecurity

PM = {"host": "sut", "meter": "wt310"}
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


def test_the_page_is_rendered_once_per_tick_and_served_over_one_kept_alive_connection():
    sink = PrometheusSink("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sink.port}/metrics"
    try:
        with requests.Session() as session:
            sink.publish_samples([Sample(schema.PM_POWER, PM, 80.0, 1)])
            bodies = {session.get(url, timeout=5).text for _ in range(5)}
            assert sink.renders == 1 and len(bodies) == 1 and "} 80.0" in bodies.pop()
            sink.publish_samples([Sample(schema.PM_POWER, PM, 90.0, 2)])  # the next tick: rendered at once,
            assert sink.renders == 2  # as the previous tick's page was scraped
            assert all("} 90.0" in session.get(url, timeout=5).text for _ in range(3))
            assert sink.renders == 2 and sink.scrapes == 8
            sink.publish_samples([Sample(schema.PM_POWER, PM, 95.0, 3)])
            sink.publish_samples([Sample(schema.PM_POWER, PM, 99.0, 4)])  # the tick before was not scraped
            assert sink.renders == 3 and "} 99.0" in session.get(url, timeout=5).text and sink.renders == 4
            assert sink._server.open_connections == 1  # all eight over one connection
    finally:
        sink.close()


def test_openmetrics_has_units_from_the_schema_and_the_energy_counter_its_reading_time():
    sink = PrometheusSink("127.0.0.1", 0)
    try:
        reading_ns = 1_764_572_402_250_999_999
        sink.publish_samples([
            Sample(schema.PM_ENERGY, PM, 1234.5, reading_ns), Sample(schema.PM_POWER, PM, 87.5, reading_ns),
            Sample(schema.PM_SAMPLES, PM, 7, reading_ns), Sample(schema.GPU_UTILIZATION, {
                "host": "sut", "gpu": "0", "uuid": "u", "name": "n"}, 0.5, reading_ns)])
        answer = requests.get(f"http://127.0.0.1:{sink.port}/metrics", headers=OPENMETRICS, timeout=5)
    finally:
        sink.close()
    text = answer.text
    assert answer.headers["Content-Type"].startswith("application/openmetrics-text")
    assert "# UNIT mltelemetry_pm_energy_joules joules\n" in text
    assert "# UNIT mltelemetry_pm_power_watts watts\n" in text
    assert "# UNIT mltelemetry_gpu_utilization_ratio ratio\n" in text
    assert "# UNIT mltelemetry_pm_samples" not in text  # a count has no unit
    # OpenMetrics timestamps are seconds: the reading's time to the nanosecond; the gauge has none.
    assert 'mltelemetry_pm_energy_joules_total{host="sut",meter="wt310"} 1234.5 1764572402.250999999\n' in text
    assert 'mltelemetry_pm_power_watts{host="sut",meter="wt310"} 87.5\n' in text
    assert text.endswith("# EOF\n")


def test_root_links_metrics_and_healthz_says_whether_the_exporter_ticks():
    now = [100.0]
    sink = PrometheusSink("127.0.0.1", 0, healthy_within_s=5.0, clock=lambda: now[0])
    base = f"http://127.0.0.1:{sink.port}"
    try:
        root = requests.get(f"{base}/", timeout=5)
        assert root.status_code == 200 and 'href="/metrics"' in root.text and "mltelemetry_" not in root.text
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 503  # nothing sampled yet
        sink.publish_samples([Sample(schema.PM_POWER, PM, 80.0, 1)])
        now[0] = 104.0
        health = requests.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 200 and health.text == "ok: last sample 4.0 s ago\n"
        now[0] = 105.5  # 5.5 s without a tick
        health = requests.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 503 and "stale: last sample 5.5 s ago" in health.text
        assert "mltelemetry_" not in health.text
        assert requests.get(f"{base}/nothing", timeout=5).status_code == 404
    finally:
        sink.close()


def test_promtool_finds_the_exporters_pages_clean_build_info_included():
    """A host and a GPU exporter (fake NVML) tick once into one sink: ``promtool check metrics`` says nothing."""
    fake = FakeNvml([FakeGpu(steps=[Step(0.0, 100.0, temperature_c=40)], uuid="GPU-1")], clock=FakeClock(1.0))
    gpu = GpuCollector(nvml.open_nvml(fake), "sut", monotonic=fake.clock)
    sink = PrometheusSink("127.0.0.1", 0)
    try:
        Exporter(HostCollector("sut"), [sink], host="sut").tick()
        Exporter(gpu, [sink], host="sut").tick()
        text = requests.get(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).text
    finally:
        sink.close()
    check = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=60)
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stdout + check.stderr
    python = ".".join(map(str, sys.version_info[:3]))
    assert (f'mltelemetry_build_info{{driver="580.159.04",exporter="gpu",host="sut",python="{python}",'
            f'version="{__version__}"}} 1.0') in text
    assert f'mltelemetry_build_info{{driver="",exporter="host",host="sut",python="{python}"' in text


# --- under pressure ---------------------------------------------------------------------------------------
def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``, as the kernel reports it (ss: Send-Q of a LISTEN socket)."""
    out = subprocess.run([require_binary("ss"), "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[2])


def test_the_listen_backlog_holds_a_burst_of_clients():
    sink = PrometheusSink("127.0.0.1", 0)
    try:
        assert listen_backlog(sink.port) == 128  # socketserver's default was 5
    finally:
        sink.close()


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closed ``connection`` (recv sees the end of the stream or a reset)."""
    connection.settimeout(0.1)
    try:
        return connection.recv(1 << 16) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_an_idle_connection_and_one_trickling_its_headers_are_closed():
    limits = ServerLimits(idle_timeout_s=0.5, header_timeout_s=1.0)
    sink = PrometheusSink("127.0.0.1", 0, limits=limits)
    try:
        idle = socket.create_connection(("127.0.0.1", sink.port))
        slow = socket.create_connection(("127.0.0.1", sink.port))
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        stop = threading.Event()

        def trickle() -> None:  # a header line every 0.2 s: each recv is quick, the headers never end
            while not stop.wait(0.2):
                try:
                    slow.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        try:
            wait_for(lambda: closed_by_server(idle), 20, "the idle connection to be closed", interval_s=0)
            wait_for(lambda: closed_by_server(slow), 20, "the trickling connection to be closed", interval_s=0)
        finally:
            stop.set()
            idle.close()
            slow.close()
        wait_for(lambda: sink._server.open_connections == 0, 20, "the server to count both closed")
    finally:
        sink.close()


def test_at_the_connection_cap_idle_connections_make_room_for_scrapes(caplog):
    sink = PrometheusSink("127.0.0.1", 0, limits=ServerLimits(max_connections=4))
    idle = [socket.create_connection(("127.0.0.1", sink.port)) for _ in range(20)]
    try:
        with caplog.at_level(logging.WARNING, logger="mltelemetry.httpserver"):
            sink.publish_samples([Sample(schema.PM_POWER, PM, 80.0, 1)])
            for _ in range(5):
                answer = requests.get(f"http://127.0.0.1:{sink.port}/metrics", timeout=10)
                assert answer.status_code == 200 and "} 80.0" in answer.text
        assert sink._server.open_connections <= 4 + 1  # the cap, and at most one evicted one still closing
        assert "4 connections open, the cap; closing the one idle longest" in caplog.text
    finally:
        for connection in idle:
            connection.close()
        sink.close()


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_with_few_descriptors_many_idle_connections_neither_stop_metrics_nor_spin_the_exporter(tmp_path):
    """Issue 16: with 64 descriptors, 57 idle connections stopped /metrics and spun the exporter silently."""
    port = free_port()
    log = (tmp_path / "exporter.log").open("w+")
    exporter = subprocess.Popen(
        [sys.executable, "-m", "mltelemetry", "exporter", "host", "--listen", f"127.0.0.1:{port}"],
        stderr=log, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
    idle: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: requests.get(url, timeout=2).ok, 60, "the exporter to serve /metrics")
        for _ in range(100):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for _ in range(5):
            answer = wait_for(lambda: requests.get(url, timeout=5), 30, "a scrape past the idle connections")
            assert answer.status_code == 200 and "mltelemetry_host_memory_total_bytes" in answer.text
        before = cpu_seconds(exporter.pid)
        time.sleep(2.0)  # idle connections held open: the exporter must not spin on them
        assert cpu_seconds(exporter.pid) - before < 1.0  # spinning took 60–80 % of a core; a tick takes ~ms
        log.seek(0)
        assert re.search(r"connections open, the cap; closing the one idle longest", log.read())
    finally:
        for connection in idle:
            connection.close()
        exporter.terminate()
        exporter.wait(timeout=30)


# --- what an exporter loads ---------------------------------------------------------------------------------
HEAVY = ("numpy", "pandas", "scipy", "matplotlib")


def test_an_exporter_writing_to_the_store_and_serving_metrics_loads_no_analysis_stack(tmp_path):
    """The real process' mapped files: no numpy, pandas, scipy or matplotlib extension module in it (issue 11)."""
    port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "mltelemetry", "exporter", "host", "--listen",
                                 f"127.0.0.1:{port}", "--store", str(tmp_path / "h.db")], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, 60, "the exporter to tick")
        mapped = open(f"/proc/{exporter.pid}/maps").read()
        assert "/site-packages/psutil/" in mapped  # the check sees extension modules at all
        assert not [name for name in HEAVY if f"/site-packages/{name}/" in mapped]
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)


def test_the_command_line_imports_the_analysis_stack_only_for_analyze():
    for args, heavy in ((["--help"], False), (["exporter", "pm", "--help"], False),
                        (["campaign", "run", "--help"], False), (["analyze", "--help"], True)):
        run = subprocess.run([sys.executable, "-X", "importtime", "-m", "mltelemetry", *args], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
        assert ("pandas" in imported) is heavy, args
        assert "Usage:" in run.stdout


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    """Send ``request`` on a new connection; the server's whole answer and whether it then closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            received = conn.recv(65536)
            assert received, f"closed without an answer: {answer!r}"
            answer += received
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(body) < length:
            body += conn.recv(65536)
        conn.settimeout(2)
        try:
            closed = conn.recv(1) == b""
        except TimeoutError:
            closed = False
    return head + b"\r\n\r\n" + body, closed


def test_requests_are_read_as_http_server_reads_them_without_the_email_package():
    sink = PrometheusSink("127.0.0.1", 0, security=WebSecurity(basic_auth={"u": "p"}))
    sink.publish_samples([Sample(schema.PM_POWER, PM, 80.0, 1)])
    auth = b"Authorization: Basic dTpw\r\n"  # base64 of u:p
    try:
        # header names in any case, a folded line continued after a space (RFC 9112; http.server kept the line
        # break in the value, which no credentials match); HTTP/1.1 keeps the connection, 1.0 closes it
        answer, closed = raw_exchange(sink.port, b"GET /metrics HTTP/1.1\r\nAUTHORIZATION: Basic\r\n dTpw\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200") and b"} 80.0" in answer and not closed
        answer, closed = raw_exchange(sink.port, b"GET /metrics HTTP/1.0\r\n" + auth + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 200") and closed
        answer, closed = raw_exchange(sink.port, b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n" + auth
                                      + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 200") and not closed
        answer, closed = raw_exchange(sink.port, b"GET /metrics HTTP/1.1\r\nConnection: close\r\n" + auth + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 200") and closed
        # the first of repeated headers counts, as in http.server
        answer, _ = raw_exchange(sink.port, b"GET /metrics HTTP/1.1\r\nAuthorization: Basic eDp5\r\n" + auth
                                 + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 401")
        # what is no HTTP/1.x request, a header line without a colon, too long a line, too many headers
        for request, status in ((b"GET /metrics\r\n\r\n", b"400"), (b"GET /metrics HTTP/2.0\r\n\r\n", b"400"),
                                (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", b"400"),
                                (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
                                (b"GET /metrics HTTP/1.1\r\n" + b"X: 1\r\n" * 101 + b"\r\n", b"431")):
            answer, closed = raw_exchange(sink.port, request)
            assert answer.startswith(b"HTTP/1.1 " + status) and closed, (request[:40], answer[:60])
        assert sink.scrapes == 4  # the four answered 200; the 401 and the refused requests reached no page
    finally:
        sink.close()


def read_answer(conn: socket.socket, buffered: bytes) -> tuple[bytes, bytes]:
    """One whole answer (head and body) from ``conn`` after ``buffered``; and what came after it."""
    while b"\r\n\r\n" not in buffered:
        buffered += conn.recv(65536)
    head, _, rest = buffered.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(rest) < length:
        rest += conn.recv(65536)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def test_a_request_whose_head_came_whole_is_answered_from_the_buffer_and_a_trickled_one_as_before(monkeypatch):
    from mltelemetry import httpserver

    general = []  # requests read line by line under the header deadline (http.server's way)

    class Counted(httpserver._HeaderDeadline):
        def __init__(self, *args):
            general.append(1)
            super().__init__(*args)

    monkeypatch.setattr(httpserver, "_HeaderDeadline", Counted)
    sink = PrometheusSink("127.0.0.1", 0)
    sink.publish_samples([Sample(schema.PM_POWER, PM, 80.0, 1)])
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: Prometheus/2.42.0\r\nAccept-Encoding: gzip\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as conn:
            conn.sendall(request + request.replace(b"/metrics", b"/healthz"))  # two requests in one segment
            first, rest = read_answer(conn, b"")
            second, rest = read_answer(conn, rest)
            assert first.startswith(b"HTTP/1.1 200") and b'{host="sut",meter="wt310"} 80.0\n' in first
            assert second.startswith(b"HTTP/1.1 200") and second.endswith(b"ok\n") and rest == b""
            assert general == [] and sink.scrapes == 1
            # a head in two parts: the answer is the same whichever way it was read
            conn.sendall(request[:20])
            time.sleep(0.2)
            conn.sendall(request[20:])
            third, _ = read_answer(conn, b"")
            assert third.split(b"\r\n\r\n")[1] == first.split(b"\r\n\r\n")[1] and sink.scrapes == 2
    finally:
        sink.close()
