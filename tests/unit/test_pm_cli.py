"""``mltelemetry pm emulate`` and ``mltelemetry exporter pm``: user errors in one line, and both
commands end to end as real processes (emulator on a pty, exporter writing the store)."""

from __future__ import annotations

import os

import pytest
import typer
from typer.testing import CliRunner

from mltelemetry.cli import app as root_app
from mltelemetry.cliutil import OneLineErrorsGroup
from mltelemetry.exporters.pm.cli import app, pm_exporter_command

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
