"""What the processes import: an exporter writing its store and serving /metrics imports no numpy, pandas,
scipy, matplotlib nor pydantic (half an exporter's memory), nor prometheus-client, and `mltelemetry --help`
imports no subcommand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import requests

from conftest import free_port, wait_for
from mltelemetry import schema
from mltelemetry.schema import Sample
from mltelemetry.store import CHUNK_SAMPLES, Store

# numpy, pandas, scipy and matplotlib: the analysis stack; pydantic: what typer 0.29 imports (≈ 8 MB of an exporter)
HEAVY = {"numpy", "pandas", "scipy", "matplotlib", "pydantic", "pydantic_core"}
# prometheus_client: an exporter writes its page and process_* series itself (≈ 4.5–10 MB less)
NOT_IN_AN_EXPORTER = HEAVY | {"prometheus_client"}
# http.server (with the email package and http.client), ssl and hashlib/hmac (OpenSSL's libcrypto): the /metrics
# server stands on socketserver; TLS, basic auth and the push sinks import what they need when configured
# (≈ 6.5 MB of an exporter)
NOT_IN_A_PLAIN_EXPORTER = {"http.server", "http.client", "email", "ssl", "urllib.request", "hashlib", "hmac"}

# Runs the mltelemetry command with the given arguments and writes the names in sys.modules at its exit.
WITH_MODULES_AT_EXIT = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "mltelemetry"
from mltelemetry.cli import main
main()
"""


def spawn_with_modules(tmp_path, *args: str) -> tuple[subprocess.Popen, object]:
    modules = tmp_path / "modules.json"
    process = subprocess.Popen([sys.executable, "-c", WITH_MODULES_AT_EXIT, str(modules), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, modules


def top_level(modules_file) -> set[str]:
    return {name.split(".")[0] for name in json.loads(modules_file.read_text())}


def lean(modules_file) -> None:
    """No module of NOT_IN_AN_EXPORTER (by its top-level name), none of NOT_IN_A_PLAIN_EXPORTER."""
    names = set(json.loads(modules_file.read_text()))
    assert not top_level(modules_file) & NOT_IN_AN_EXPORTER
    assert not names & NOT_IN_A_PLAIN_EXPORTER


def prefill_exporter_series(store_path, exporter: str) -> None:
    """CHUNK_SAMPLES - 1 old samples of the exporter's own exporter_samples_total, so its first flush moves a
    full chunk out of the head: the write path's encoding runs in the exporter."""
    with Store(store_path) as store:
        store.write([Sample(schema.EXPORTER_SAMPLES, {"host": "sut", "exporter": exporter}, float(i), i * 10**9)
                     for i in range(CHUNK_SAMPLES - 1)])


def chunks(store_path) -> int:
    with Store(store_path) as store:
        return store._db.execute("SELECT count(*) FROM chunks").fetchone()[0]


def run_until_chunked_and_scraped(process, store_path, port: int) -> None:
    try:
        wait_for(lambda: chunks(store_path) >= 1, 60, "the exporter's first chunk")
        page = wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5,
                                             headers={"Accept": "application/openmetrics-text"}), 60, "/metrics")
        assert "exporter_samples_total" in page.text and "process_resident_memory_bytes" in page.text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, process.stderr.read()


def test_host_exporter_writes_chunks_and_serves_metrics_without_numpy(tmp_path):
    store_path, port = tmp_path / "host.db", free_port()
    prefill_exporter_series(store_path, "host")
    process, modules = spawn_with_modules(tmp_path, "exporter", "host", "--store", str(store_path), "--listen",
                                          f"127.0.0.1:{port}", "--host-label", "sut", "--interval", "0.2")
    run_until_chunked_and_scraped(process, store_path, port)
    loaded = top_level(modules)
    assert "psutil" in loaded and "mltelemetry" in loaded  # the list is the exporter's
    lean(modules)


def test_pm_exporter_writes_chunks_and_serves_metrics_without_numpy(tmp_path):
    link, store_path, port = tmp_path / "wt310", tmp_path / "pm.db", free_port()
    prefill_exporter_series(store_path, "pm")
    emulator = subprocess.Popen([sys.executable, "-m", "mltelemetry", "pm", "emulate", "--driver", "wt300",
                                 "--link", str(link), "--profile", "constant:100"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert emulator.stdout.readline().startswith(f"emulating a WT310 on {link}")
        process, modules = spawn_with_modules(tmp_path, "exporter", "pm", "--driver", "wt300", "--port", str(link),
                                              "--store", str(store_path), "--listen", f"127.0.0.1:{port}",
                                              "--host-label", "sut")
        run_until_chunked_and_scraped(process, store_path, port)
    finally:
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(30)
    loaded = top_level(modules)
    assert "serial" in loaded and "mltelemetry" in loaded
    lean(modules)


def test_root_help_lists_every_subcommand_and_imports_none(tmp_path):
    process, modules = spawn_with_modules(tmp_path, "--help")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    for name, line in (("exporter", "Run one exporter (host, pm, gpu)."), ("campaign", "Run workload campaigns"),
                       ("analyze", "A campaign's baseline-adjusted energy"), ("demo", "Run the whole chain"),
                       ("store", "Look into an embedded store file."), ("deploy", "Deployment files"),
                       ("pm", "Power-meter tools")):
        assert any(row.split()[:1] == [name] and line in row for row in out.splitlines()), (name, out)
    loaded = set(json.loads(modules.read_text()))
    assert {"mltelemetry.cli", "typer"} <= loaded
    assert not {m for m in loaded if m.startswith(("mltelemetry.exporters", "mltelemetry.workload",
                                                  "mltelemetry.analysis", "mltelemetry.storecli",
                                                  "mltelemetry.deploy", "mltelemetry.demo"))}
    assert not top_level(modules) & (HEAVY | {"rich", "psutil", "prometheus_client"})


def complete(words: str, cword: int, tmp_path) -> list[str]:
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_MLTELEMETRY_COMPLETE": "complete_bash"}
    done = subprocess.run([sys.executable, "-m", "mltelemetry"], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_completion_of_the_lazy_subcommands_options(tmp_path):
    # analyze and demo are imported when their options are completed (they were run through a forwarder before,
    # which completed nothing)
    assert complete("mltelemetry analyze --sou", 2, tmp_path) == ["--source"]
    assert "--seconds" in complete("mltelemetry demo --", 2, tmp_path)
    assert complete("mltelemetry exp", 1, tmp_path) == ["exporter"]


def test_a_mistyped_subcommand_gets_a_suggestion():
    done = subprocess.run([sys.executable, "-m", "mltelemetry", "analyse"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: No such command 'analyse'. Did you mean 'analyze'? (see: mltelemetry --help)"


def test_every_lazy_subcommand_loads_under_its_name():
    """The lazy groups name modules and attributes as text: each must import and build (a typo would only show
    when a user runs that command)."""
    from mltelemetry.cli import RootGroup
    from mltelemetry.exporters.cli import ExporterGroup

    for group in (RootGroup, ExporterGroup):
        for name in group.subcommands:
            command = group(name="g").load(name)
            assert command.name == name and (command.help or command.short_help), (group.__name__, name)
