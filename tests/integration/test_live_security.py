"""/metrics over TLS with basic auth, scraped by a real Prometheus; loopback by default."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from conftest import free_port, require_binary, wait_for
from mltelemetry.sinks import PrometheusSink, WebSecurity


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and its key (openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([require_binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_metrics_over_tls_with_basic_auth(certificate, tmp_path):
    cert, key = certificate
    sink = PrometheusSink("127.0.0.1", 0, WebSecurity(cert, key, {"prom": "pa55"}))
    url = f"https://127.0.0.1:{sink.port}/metrics"
    try:
        assert requests.get(url, verify=str(cert), auth=("prom", "pa55"), timeout=5).status_code == 200
        assert requests.get(url, verify=str(cert), timeout=5).status_code == 401
        assert requests.get(url, verify=str(cert), auth=("prom", "wrong"), timeout=5).status_code == 401
        assert requests.get(url, verify=str(cert), headers={"Authorization": "Basic !!"}, timeout=5).status_code == 401
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{sink.port}/metrics", timeout=5)  # no plain HTTP
    finally:
        sink.close()


def test_a_silent_connection_does_not_block_tls_scrapes(certificate):
    cert, key = certificate
    sink = PrometheusSink("127.0.0.1", 0, WebSecurity(cert, key))
    try:
        with socket.create_connection(("127.0.0.1", sink.port)):  # connects, never starts the handshake
            time.sleep(0.2)
            for _ in range(3):
                response = requests.get(f"https://127.0.0.1:{sink.port}/metrics", verify=str(cert), timeout=5)
                assert response.status_code == 200
    finally:
        sink.close()


def test_prometheus_scrapes_a_tls_basic_auth_exporter(certificate, tmp_path):
    cert, key = certificate
    users = tmp_path / "users"
    users.write_text("prometheus:correct horse\n")
    users.chmod(0o600)
    port, prom_port = free_port(), free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "mltelemetry", "exporter", "host", "--listen", f"127.0.0.1:{port}",
         "--host-label", "tls-sut", "--tls-cert", str(cert), "--tls-key", str(key), "--basic-auth-file", str(users)],
        stderr=subprocess.PIPE, env={**os.environ})
    (tmp_path / "pw").write_text("correct horse")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: tls
    scheme: https
    tls_config: {{ca_file: {cert}}}
    basic_auth: {{username: prometheus, password_file: {tmp_path / 'pw'}}}
    static_configs: [{{targets: ['127.0.0.1:{port}']}}]
""")
    prometheus = subprocess.Popen([require_binary("prometheus"), f"--config.file={config}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        prom = f"http://127.0.0.1:{prom_port}"

        def scraped():
            r = requests.get(f"{prom}/api/v1/query", params={"query": 'mltelemetry_host_memory_total_bytes'},
                             timeout=5).json()["data"]["result"]
            return r

        (series,) = wait_for(scraped, 40, "Prometheus to scrape the exporter over TLS")
        assert series["metric"]["host"] == "tls-sut" and float(series["value"][1]) > 0
        assert requests.get(f"https://127.0.0.1:{port}/metrics", verify=str(cert), timeout=5).status_code == 401
    finally:
        prometheus.terminate()
        exporter.terminate()
        prometheus.wait(timeout=15)
        _, stderr = exporter.communicate(timeout=15)
    assert b"serving /metrics on https://127.0.0.1" in stderr
