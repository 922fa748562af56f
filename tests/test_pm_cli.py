"""``mltelemetry pm emulate`` and ``mltelemetry exporter pm``: user errors in one line, and both
commands end to end as real processes (emulator on a pty, exporter writing the store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import typer
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.exporters.pm.cli import app, pm_exporter_command
from mltelemetry.store import Store

runner = CliRunner()
exporter_app = typer.Typer()
exporter_app.command("pm")(pm_exporter_command)
exporter_app.command("other")(lambda: None)  # two commands, so "pm" is addressed by name as in the real CLI


def _one_error_line(result) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(("profile", "message"), [
    ("bogus:1", "unknown profile 'bogus:1'"),
    ("steps:100", "is not WATTS/SECONDS"),
    ("constant:-3", "non-negative"),
    ("csv:/nonexistent.csv", "cannot read /nonexistent.csv"),
])
def test_emulate_rejects_bad_profiles(tmp_path, profile, message):
    result = runner.invoke(app, ["emulate", "--link", str(tmp_path / "wt"), "--profile", profile])
    assert message in _one_error_line(result)
    assert result.exit_code == 1
    assert not os.path.lexists(tmp_path / "wt")


def test_emulate_rejects_unknown_driver_and_bad_rates(tmp_path):
    result = runner.invoke(app, ["emulate", "--driver", "wt9000", "--link", str(tmp_path / "wt")])
    assert "unknown driver 'wt9000'" in _one_error_line(result)
    result = runner.invoke(app, ["emulate", "--link", str(tmp_path / "wt"), "--garbage-rate", "0.6",
                                 "--nan-rate", "0.6"])
    assert "sum to at most 1" in _one_error_line(result)


@pytest.mark.parametrize(("args", "message"), [
    (["--driver", "wt9000"], "unknown driver 'wt9000'"),
    (["--meter-rate", "0.3"], "no update rate of 0.3"),
    (["--listen", "nowhere"], "--listen wants HOST:PORT"),
])
def test_exporter_rejects_bad_options(args, message):
    result = runner.invoke(exporter_app, ["pm", "--port", "/dev/null", *args])
    assert message in _one_error_line(result)


def test_exporter_requires_a_port():
    result = runner.invoke(exporter_app, ["pm"])
    assert result.exit_code == 2 and "--port" in result.output


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_emulator_and_exporter_processes_end_to_end(tmp_path):
    link, store = tmp_path / "wt310", tmp_path / "store.db"
    emulator = _spawn("from mltelemetry.exporters.pm.cli import app; app()", "emulate", "--link", str(link),
                      "--profile", "constant:150", "--update-interval", "0.25", "--nan-rate", "0.2",
                      "--seed", "1")
    exporter = None
    try:
        ready = emulator.stdout.readline()
        assert ready.startswith(f"emulating a WT310 on {link} -> /dev/pts/"), ready
        assert os.path.islink(link)
        exporter = _spawn("import typer; from mltelemetry.exporters.pm.cli import pm_exporter_command as c; "
                          "typer.run(c)", "--port", str(link), "--meter", "wt310", "--listen", "off",
                          "--store", str(store), "--interval", "0.25", "--meter-rate", "0.25",
                          "--host-label", "sut")
        time.sleep(4)
        exporter.send_signal(signal.SIGTERM)
        assert exporter.wait(10) == 0, exporter.stderr.read()
    finally:
        if exporter and exporter.poll() is None:
            exporter.kill()
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(10) == 0, emulator.stderr.read()
    assert not os.path.lexists(link)
    with Store(store) as db:
        labels = {"host": "sut", "meter": "wt310"}
        energy = db.query(schema.PM_ENERGY, labels)["value"].to_numpy()
        power_frame = db.query(schema.PM_POWER, labels)
        power = power_frame["value"].to_numpy()
        last_ns = db.query(schema.PM_ENERGY, labels)["ts_ns"].max()
        invalid = db.query(schema.PM_INVALID, labels)["value"].to_numpy()
        connected = db.query(schema.PM_CONNECTED, labels)["value"].to_numpy()
    print(f"{len(energy)} ticks, {len(power)} valid, {invalid[-1]:.0f} invalid, energy {energy[-1]:.1f} J")
    assert len(energy) >= 8 and (connected == 1).all()
    assert (power == 150.0).all() and len(power) + invalid[-1] == len(energy)
    assert invalid[-1] >= 1
    assert (energy[1:] >= energy[:-1]).all()
    # Integrated from the first valid reading on (short NAN stretches are bridged).
    seconds = (last_ns - power_frame["ts_ns"].min()) / 1e9
    assert energy[-1] == pytest.approx(150.0 * seconds, rel=0.02)
