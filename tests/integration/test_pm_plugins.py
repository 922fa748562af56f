"""Meters as plug-ins: a fourth meter (``tiny_meter.py``, one module) registered from the test with one line
shows up in ``exporter pm --help`` and ``pm emulate --help`` with its own options, is refused the other
meters' options, and measures end to end through an emulator process and an exporter process writing a
store. Also: what each built-in plug-in declares is what the commands do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import tiny_meter
import typer
from typer.testing import CliRunner

from conftest import wait_for
from mltelemetry import schema
from mltelemetry.cliutil import OneLineErrorsGroup
from mltelemetry.errors import MltelemetryError
from mltelemetry.exporters.pm.cli import build_app, exporter_command
from mltelemetry.exporters.pm.collector import PmCollector
from mltelemetry.exporters.pm.emulator import constant_profile
from mltelemetry.exporters.pm.plugin import MeterOption
from mltelemetry.exporters.pm.registry import PLUGINS, find, max_power_w
from mltelemetry.store import Store

WITH_TINY = (*PLUGINS, tiny_meter.PLUGIN)  # the registration line
TESTS = os.path.dirname(os.path.abspath(tiny_meter.__file__))
runner = CliRunner()


def _exporter_app(plugins) -> typer.Typer:
    group = typer.Typer(cls=OneLineErrorsGroup)  # as the real CLI's `exporter` group
    group.command("pm")(exporter_command(plugins))
    group.command("other")(lambda: None)
    return group


def _help(app: typer.Typer, args: list[str]) -> str:
    """The --help text as one line: rich's boxes and wrapping taken out."""
    text = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "250"}).output
    return " ".join(text.replace("│", " ").split())


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output  # every one is a usage error
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_the_fourth_meter_appears_in_both_commands_with_its_own_options():
    exporter_help = _help(_exporter_app(WITH_TINY), ["pm"])
    assert "wt300|mcp39f511|ptd|tiny" in exporter_help
    assert "tiny, a test-only meter (tests/tiny_meter.py)" in exporter_help
    assert "--tiny-channel" in exporter_help and "Channel to read: 1 (the load) or 2 (none) (default 1)." \
        in exporter_help
    assert "default 9600 (wt300), 115200 (mcp39f511), 9600 (tiny)" in exporter_help  # --baudrate's help
    emulate_help = _help(build_app(WITH_TINY), ["emulate"])
    assert "wt300|mcp39f511|ptd|tiny" in emulate_help and "--tiny-period" in emulate_help
    # the built-in commands do not know it
    assert "tiny" not in _help(_exporter_app(PLUGINS), ["pm"])


@pytest.mark.parametrize(("args", "message"), [
    (["--tiny-channel", "2"], "--tiny-channel applies to --driver tiny, not wt300"),
    (["--driver", "tiny", "--sync"], "--sync applies to --driver wt300, not tiny"),
    (["--driver", "tiny", "--tiny-channel", "3"], "the tiny meter's channel must be 1 or 2, not 3"),
    (["--driver", "ptd", "--tiny-channel", "1"], "--tiny-channel applies to --driver tiny, not ptd"),
])
def test_the_fourth_meter_refuses_and_is_refused_options(args, message):
    result = runner.invoke(_exporter_app(WITH_TINY), ["pm", "--port", "/dev/null", *args])
    assert message in _one_error_line(result)


@pytest.mark.parametrize(("args", "message"), [
    (["--vxi11", "127.0.0.1:0"],
     "--vxi11 is for --driver wt300; the tiny emulator serves --link PATH (a pseudo-terminal) or --tcp HOST:PORT"),
    (["--link", "L", "--nan-rate", "0.1"], "TinyEmulator cannot inject inf, nan, overrange; its faults are garbage"),
    (["--link", "L", "--tiny-period", "0.01"], "'--tiny-period': 0.01 is not in the range x>=0.05"),
])
def test_the_fourth_meters_emulator_refuses_what_it_cannot_do(tmp_path, args, message):
    args = [str(tmp_path / a) if a == "L" else a for a in args]
    result = runner.invoke(build_app(WITH_TINY), ["emulate", "--driver", "tiny", *args])
    assert message in _one_error_line(result)
    assert not os.path.lexists(tmp_path / "L")


def test_a_meter_option_that_clashes_is_refused_when_the_commands_are_built():
    clash = tiny_meter.PLUGIN.__class__(**{**tiny_meter.PLUGIN.__dict__, "name": "tiny2",
                                           "options": (MeterOption("channel", 1, "Channel"),)})
    with pytest.raises(ValueError, match="option --channel is taken by mcp39f511"):
        exporter_command((*PLUGINS, clash))


def _spawn(code: str, *args: str) -> subprocess.Popen:
    code = f"import sys; sys.path.insert(0, {TESTS!r}); import tiny_meter; " \
           "from mltelemetry.exporters.pm.registry import PLUGINS; " + code
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_the_fourth_meter_end_to_end_through_emulator_and_exporter_processes(tmp_path):
    link, store = tmp_path / "tiny", tmp_path / "tiny.db"
    # Steps of 0.5 s and updates of 0.5 s from the same origin: each update averages exactly one step, so
    # the meter reads 120 W or 900 W, and 900 W is beyond the 500 W its plug-in declares: counted invalid.
    emulator = _spawn("from mltelemetry.exporters.pm.cli import build_app; "
                      "build_app((*PLUGINS, tiny_meter.PLUGIN))()",
                      "emulate", "--driver", "tiny", "--link", str(link), "--profile", "steps:120/0.5,900/0.5",
                      "--tiny-period", "0.5")
    exporter = None
    try:
        banner = emulator.stdout.readline()
        assert banner.startswith(f"emulating a tiny meter on {link} -> /dev/pts/"), banner
        assert banner.rstrip().endswith("(profile steps:120/0.5,900/0.5, update every 0.5 s)")
        exporter = _spawn("import typer; from mltelemetry.exporters.pm.cli import exporter_command; "
                          "typer.run(exporter_command((*PLUGINS, tiny_meter.PLUGIN)))",
                          "--driver", "tiny", "--port", str(link), "--meter", "tiny", "--listen", "off",
                          "--store", str(store), "--interval", "0.25", "--host-label", "sut")

        def valid_readings() -> int:
            try:
                with Store(store, create=False) as db:
                    return len(db.query(schema.PM_POWER, {"meter": "tiny"}))
            except MltelemetryError:  # no file yet, or the exporter is still creating its tables
                return 0

        wait_for(lambda: valid_readings() >= 6, 60, "six valid readings of the tiny meter")
        exporter.send_signal(signal.SIGTERM)
        assert exporter.wait(15) == 0, exporter.stderr.read()
    finally:
        if exporter and exporter.poll() is None:
            exporter.kill()
        emulator.send_signal(signal.SIGTERM)
        assert emulator.wait(15) == 0, emulator.stderr.read()
    assert not os.path.lexists(link)
    with Store(store) as db:
        labels = {"host": "sut", "meter": "tiny"}
        power_frame = db.query(schema.PM_POWER, labels)
        energy_frame = db.query(schema.PM_ENERGY, labels)
        invalid = db.query(schema.PM_INVALID, labels)["value"].to_numpy()
        info = db.query(schema.PM_INFO, labels)
    power, energy = power_frame["value"].to_numpy(), energy_frame["value"].to_numpy()
    print(f"{len(energy)} ticks, {len(power)} valid, {invalid[-1]:.0f} invalid, energy {energy[-1]:.1f} J")
    assert set(info["driver"]) == {"tiny"} and set(info["model"]) == {"TINY-1"}
    assert (power == 120.0).all()  # never 900 W: beyond the declared range
    assert invalid[-1] >= 1 and len(power) + invalid[-1] == len(energy)
    # Every refused stretch is short (0.5 s), so it is bridged with the next valid reading's 120 W: the
    # counter is 120 W x the seconds from the first valid reading to the last (trailing refused ticks are not
    # bridged yet), to within the stamping jitter: 0.1 s of 120 W = 12 J.
    seconds = (power_frame["ts_ns"].max() - power_frame["ts_ns"].min()) / 1e9
    assert energy[-1] == pytest.approx(120.0 * seconds, abs=12.0)


def test_each_collector_takes_its_meters_power_range_from_the_registry(tmp_path):
    # the ranges the plug-ins declare (a WT310's 840 V x 28 A, the MCP39F511N board's 4 kW, PTDaemon's any)
    assert [(p.name, p.max_power_w) for p in PLUGINS] == [("wt300", 24_000.0), ("mcp39f511", 5_000.0),
                                                          ("ptd", 100_000.0)]
    assert max_power_w("unknown") == 100_000.0
    # a real tiny meter on a pty reading 600 W: beyond its 500 W, counted as invalid and never published
    emulator = tiny_meter.TinyEmulator(constant_profile(600.0), tmp_path / "tiny", period_s=0.1)
    with emulator:
        wait_for(lambda: emulator.power_w is not None, 30, "the emulator's first update")
        connection = tiny_meter.PLUGIN.connect(str(tmp_path / "tiny"), rate_s=1.0, baudrate=9600, tiny_channel=1)
        collector = PmCollector(connection.open, host="sut", meter="tiny", clock=iter(range(100)).__next__,
                                max_power_w=tiny_meter.PLUGIN.max_power_w)
        try:
            metrics = [{s.metric for s in collector.sample(tick)} for tick in range(3)]
        finally:
            collector.close()
    assert all(schema.PM_POWER not in m and schema.PM_ENERGY in m for m in metrics)
    assert collector.invalid_total == 3 and collector.samples_total == 0


def test_the_built_in_plugins_are_found_by_name():
    assert [find(name).name for name in ("wt300", "mcp39f511", "ptd")] == ["wt300", "mcp39f511", "ptd"]
    assert find("tiny") is None and find("tiny", WITH_TINY) is tiny_meter.PLUGIN


def test_pm_align_lives_on_the_analysis_side_and_loads_only_when_it_runs():
    # the exporters import nothing of the analysis (pandas, scipy: seconds of start-up and memory per exporter)
    code = ("import sys, mltelemetry.cli, mltelemetry.exporters.pm.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('mltelemetry.analysis')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    from mltelemetry.analysis.align import align_command, estimate_offset  # noqa: F401 (where it lives now)
