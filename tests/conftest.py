"""Shared test helpers: free ports and real servers (started on loopback, stopped after)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable

import pytest
import requests


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
