"""``mltelemetry pm emulate`` and ``mltelemetry exporter pm``: user errors in one line, and both
commands end to end as real processes (emulator on a pty, exporter writing the store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from conftest import wait_for
from mltelemetry import schema
from mltelemetry.cli import app as root_app
from mltelemetry.cliutil import OneLineErrorsGroup
from mltelemetry.errors import MltelemetryError
from mltelemetry.exporters.pm.cli import app, pm_exporter_command
from mltelemetry.store import Store

runner = CliRunner()
exporter_app = typer.Typer(cls=OneLineErrorsGroup)  # the real CLI's groups: usage errors in one line
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
    assert result.exit_code == 2  # a bad --profile is a usage error
    assert not os.path.lexists(tmp_path / "wt")


def test_emulate_rejects_unknown_driver_and_bad_rates(tmp_path):
    result = runner.invoke(app, ["emulate", "--driver", "wt9000", "--link", str(tmp_path / "wt")])
    assert "'wt9000' is not one of 'wt300', 'mcp39f511', 'ptd'" in _one_error_line(result)
    assert result.exit_code == 2
    result = runner.invoke(app, ["emulate", "--link", str(tmp_path / "wt"), "--garbage-rate", "0.6",
                                 "--nan-rate", "0.6"])
    assert "sum to at most 1" in _one_error_line(result)
    assert result.exit_code == 2  # a usage error, as a bad --profile is


@pytest.mark.parametrize(("args", "message"), [
    (["--driver", "wt9000"], "'wt9000' is not one of 'wt300', 'mcp39f511', 'ptd'"),
    (["--meter-rate", "0.3"], "no update rate of 0.3"),
    (["--listen", "nowhere"], "--listen wants HOST:PORT"),
])
def test_exporter_rejects_bad_options(args, message):
    result = runner.invoke(exporter_app, ["pm", "--port", "/dev/null", *args])
    assert message in _one_error_line(result)
    assert result.exit_code == 2  # every one is a usage error


def test_exporter_requires_a_port():
    result = runner.invoke(exporter_app, ["pm"])
    assert result.exit_code == 2 and "--port" in result.output


def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _valid_readings(store) -> int:
    try:
        with Store(store, create=False) as db:
            return len(db.query(schema.PM_POWER, {}))
    except MltelemetryError:  # no file yet, or the exporter is still creating its tables
        return 0


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


@pytest.mark.parametrize(("args", "message"), [
    (["--driver", "mcp39f511", "--link", "L", "--nan-rate", "0.1"],
     "Mcp39f511Emulator cannot inject inf, nan, overrange"),
    (["--driver", "wt300", "--link", "L", "--checksum-rate", "0.1"], "Wt300Emulator cannot inject checksum"),
    (["--driver", "ptd", "--nak-rate", "0.1"], "PtdEmulator cannot inject csfail, nak"),
    (["--driver", "wt300"], "give one of --link PATH"),
    (["--driver", "wt300", "--link", "L", "--tcp", "127.0.0.1:0"], "give one of --link PATH"),
    (["--driver", "mcp39f511"], "give one of --link PATH (a pseudo-terminal) or --tcp HOST:PORT"),
    (["--driver", "ptd", "--link", "L"],
     "--link is for --driver wt300, mcp39f511; the ptd emulator serves --tcp HOST:PORT"),
    (["--driver", "ptd", "--vxi11", "127.0.0.1:0"], "--vxi11 is for --driver wt300; the ptd emulator serves --tcp"),
    (["--driver", "mcp39f511", "--vxi11", "127.0.0.1:0"],
     "--vxi11 is for --driver wt300; the mcp39f511 emulator serves --link PATH (a pseudo-terminal) or --tcp"),
    (["--driver", "ptd", "--tcp", "nowhere:port"], "is not tcp://HOST:PORT"),
])
def test_emulate_rejects_bad_combinations(tmp_path, args, message):
    args = [str(tmp_path / a) if a == "L" else a for a in args]
    result = runner.invoke(app, ["emulate", *args])
    assert message in _one_error_line(result)
    assert result.exit_code == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--channel", "2"], "--channel applies to --driver mcp39f511, not wt300"),
    (["--driver", "ptd", "--sync"], "--sync applies to --driver wt300, not ptd"),
    (["--driver", "mcp39f511", "--mark", "x"], "--mark applies to --driver ptd, not mcp39f511"),
    (["--driver", "ptd", "--baudrate", "9600"], "--baudrate applies to serial meters"),
    (["--driver", "mcp39f511", "--accumulation", "0"], "accumulation N must be 1 to 8"),
    (["--driver", "mcp39f511", "--channel", "3"], "channel must be 1 or 2"),
    (["--interval", "0.5"], "--interval 0.5 is shorter than the meter's update interval 1 s"),
    (["--driver", "ptd", "--port", "tcp://h:x"], "is not tcp://HOST:PORT"),
    (["--driver", "ptd", "--port", "127.0.0.1:9", "--meter-rate", "0.05"], "must be 100 to 60000 ms"),
    (["--driver", "ptd", "--port", "127.0.0.1:9", "--mark", "two words"], "mark 'two words' must be 1 to 64"),
    (["--driver", "mcp39f511", "--energy-unit", "0"], "energy unit must be positive"),
])
def test_exporter_rejects_options_of_other_drivers(args, message):
    if "--port" not in args:
        args = ["--port", "/dev/null", *args]
    result = runner.invoke(exporter_app, ["pm", *args])
    assert message in _one_error_line(result)


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


@pytest.mark.parametrize(("args", "message"), [
    (["--start", "inf"], "--start wants a finite time, not 'inf'"),
    (["--end", "-inf"], "--end wants a finite time"),
    (["--last", "inf"], "--last wants a finite duration"),
    (["--last", "1e400s"], "--last wants a finite duration"),
    (["--reference-window", "inf"], "--reference-window wants a finite number"),
    (["--max-lag", "inf"], "--max-lag wants a finite number"),
])
def test_align_refuses_infinite_times_and_windows_in_one_line(tmp_path, args, message):
    result = runner.invoke(root_app, ["pm", "align", "--source", str(tmp_path / "none.db"), *args])
    assert message in _one_error_line(result)
    assert result.exit_code == 2  # a usage error, as a negative window is


def test_align_reads_its_options_from_the_environment_and_names_its_command(tmp_path):
    # pm align runs on the analysis side now, loaded when it runs: its variables and usage line are as before
    result = runner.invoke(root_app, ["pm", "align", "--source", str(tmp_path / "none.db")],
                           env={"MLTELEMETRY_PM_ALIGN_MAX_LAG": "inf"})
    assert "--max-lag wants a finite number" in _one_error_line(result)
    result = runner.invoke(root_app, ["pm", "align", "--bogus"], prog_name="mltelemetry")  # as the entry point names it
    assert "(see: mltelemetry pm align --help)" in _one_error_line(result)


def test_align_refuses_negative_windows_as_usage_errors(tmp_path):
    for option in ("--meter-window", "--reference-window"):
        result = runner.invoke(root_app, ["pm", "align", "--source", str(tmp_path / "none.db"), option, "-5"])
        assert result.exit_code == 2 and option in result.output


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
