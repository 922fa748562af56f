"""Hostile command lines: one-line errors, right exit codes, nothing recorded lost, nothing half-done."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Event
from mltelemetry.store import Store
from mltelemetry.workload.campaign import CampaignPlan, run_campaign

S = 1_000_000_000


def test_an_unknown_campaign_names_a_few_known_ones_printably(tmp_path):
    # main: every stored name printed raw: 10 kB with escape sequences and bidi overrides in one line
    hostile = [f"c{k}\x1b[2J\u202e{'x' * 100}\n" for k in range(300)]
    with Store(tmp_path / "s.db") as store:
        store.write_events([Event(name, "cpu", 1, "run", k * S, k * S + 1) for k, name in enumerate(hostile)])
    result = CliRunner().invoke(app, ["analyze", "--campaign", "nope\x1b[31m", "--source", str(tmp_path / "s.db")])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("error: no campaign 'nope\\u001b[31m' in ") and "\n" not in message
    assert "\x1b" not in message and "\u202e" not in message and "\\u202e" in message
    assert message.endswith(" and 290 more") and len(message) < 1500


def test_a_report_path_that_is_a_file_is_a_one_line_error_and_the_file_stays(tmp_path):
    with Store(tmp_path / "s.db") as store:
        store.write_events([Event("c", "cpu", 1, "run", 0, S)])
    (tmp_path / "taken").write_text("mine\n")
    result = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db"),
                                      "--report", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "Traceback" not in result.output  # a usage error
    assert result.stderr.strip() == f"error: --report wants a folder, and {tmp_path / 'taken'} is a file"
    assert (tmp_path / "taken").read_text() == "mine\n"


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_a_non_finite_interval_is_a_usage_error(value):
    result = CliRunner().invoke(app, ["exporter", "host", "--listen", "off", "--interval", value])
    assert result.exit_code == 2
    assert "Invalid value for '--interval'" in result.output


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_non_finite_campaign_length_is_a_usage_error_and_nothing_runs(tmp_path, value):
    # main: nan/inf passed the check; the run failed while the campaign said ok
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", "c", "--store", str(tmp_path / "s.db"),
                                      "--scenario", "idle", "--runs", "1", "--seconds", value, "--no-progress"])
    assert result.exit_code == 2 and "want a finite number" in result.output
    assert not (tmp_path / "s.db").exists()
    with pytest.raises(MltelemetryError, match="positive and finite"):  # the API checks it too
        run_campaign(tmp_path / "s.db", CampaignPlan("c", ["idle"], 1, math.nan))


def test_an_empty_campaign_name_is_refused_before_anything_runs(tmp_path):
    # main: the events were stored under "" and no analysis could name the campaign
    result = CliRunner().invoke(app, ["campaign", "run", "--campaign", " ", "--store", str(tmp_path / "s.db"),
                                      "--scenario", "idle", "--runs", "1", "--seconds", "1", "--no-progress"])
    assert result.exit_code == 2 and "--campaign needs a name" in result.stderr  # a usage error


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_non_finite_spool_size_is_a_usage_error(value, tmp_path):
    # main: inf became OverflowError (int(inf * 2**20)) as a traceback
    result = CliRunner().invoke(app, ["exporter", "host", "--listen", "off", "--influx-url", "http://127.0.0.1:1",
                                      "--influx-api", "v1", "--spool-dir", str(tmp_path / "spool"),
                                      "--spool-max-mb", value])
    assert result.exit_code == 2 and "Invalid value for '--spool-max-mb'" in result.output
