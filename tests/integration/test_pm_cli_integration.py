"""``mltelemetry pm emulate`` and ``mltelemetry exporter pm``: user errors in one line, and both
commands end to end as real processes (emulator on a pty, exporter writing the store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import wait_for
from mltelemetry import schema
from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store


def _valid_readings(store) -> int:
    try:
        with Store(store, create=False) as db:
            return len(db.query(schema.PM_POWER, {}))
    except MltelemetryError:  # no file yet, or the exporter is still creating its tables
        return 0


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _stored_readings(store, labels: dict[str, str], valid: int, ticks: int = 0) -> bool:
    """Whether the exporter has stored at least ``valid`` valid power readings, ``ticks`` energy ticks and one
    invalid reading so far (it starts, and flushes every second, at the pace a loaded machine allows)."""
    if not store.exists():
        return False
    try:
        with Store(store, create=False) as db:
            invalid = db.query(schema.PM_INVALID, labels)["value"]
            return (len(db.query(schema.PM_POWER, labels)) >= valid and len(invalid) > 0 and invalid.iloc[-1] >= 1
                    and len(db.query(schema.PM_ENERGY, labels)) >= ticks)
    except MltelemetryError:  # created by the exporter but its tables not yet committed
        return False


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
        wait_for(lambda: _valid_readings(store) >= 8, 60, "8 valid readings in the store")
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


def _run_pair(emulate_args: list[str], exporter_args: list[str], store, readings: int) -> tuple[str, int, str]:
    """An emulator process and an exporter process reading it until the store holds ``readings`` valid readings;
    the banner, the exporter's exit code and its stderr."""
    emulator = _spawn("from mltelemetry.exporters.pm.cli import app; app()", "emulate", *emulate_args)
    exporter = None
    try:
        banner = emulator.stdout.readline()
        address = banner.split(" on ")[1].split(" ")[0]
        exporter = _spawn("import typer; from mltelemetry.exporters.pm.cli import pm_exporter_command as c; "
                          "typer.run(c)", "--port", address, "--listen", "off", "--store", str(store),
                          "--host-label", "sut", *exporter_args)
        wait_for(lambda: _valid_readings(store) >= readings, 60, f"{readings} valid readings in {store.name}")
        exporter.send_signal(signal.SIGTERM)
        code = exporter.wait(10)
        return banner, code, exporter.stderr.read()
    finally:
        if exporter and exporter.poll() is None:
            exporter.kill()
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(10) == 0, emulator.stderr.read()


def test_mcp_and_ptd_processes_end_to_end(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        mcp = pool.submit(_run_pair, ["--driver", "mcp39f511", "--link", str(tmp_path / "mcp"), "--profile",
                                      "constant:210", "--checksum-rate", "0.2", "--seed", "3"],
                          ["--driver", "mcp39f511", "--meter", "mcp", "--interval", "0.25", "--accumulation", "2"],
                          tmp_path / "mcp.db", 5)
        ptd = pool.submit(_run_pair, ["--driver", "ptd", "--tcp", "127.0.0.1:0", "--profile", "constant:95",
                                      "--error-rate", "0.2", "--seed", "3"],
                          ["--driver", "ptd", "--meter", "ptd", "--interval", "0.5", "--meter-rate", "0.5"],
                          tmp_path / "ptd.db", 7)  # seed 3 at rate 0.2 spoils the 6th and 7th RL replies
        results = {"mcp": mcp.result(), "ptd": ptd.result()}
    assert results["mcp"][0].startswith(f"emulating an MCP39F511N on {tmp_path / 'mcp'} -> /dev/pts/")
    assert results["ptd"][0].startswith("emulating PTDaemon on tcp://127.0.0.1:")
    for meter, watts in (("mcp", 210.0), ("ptd", 95.0)):
        banner, code, stderr = results[meter]
        assert code == 0, stderr
        with Store(tmp_path / f"{meter}.db") as db:
            labels = {"host": "sut", "meter": meter}
            power = db.query(schema.PM_POWER, labels)["value"].to_numpy()
            invalid = db.query(schema.PM_INVALID, labels)["value"].to_numpy()
            info = db.query(schema.PM_INFO, labels)
        print(f"{meter}: {len(power)} valid readings, {invalid[-1]:.0f} invalid")
        assert len(power) >= 5 and (power == watts).all() and invalid[-1] >= 1
        assert set(info["driver"]) == {"mcp39f511" if meter == "mcp" else "ptd"}

