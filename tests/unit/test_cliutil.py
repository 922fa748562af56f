"""Pieces every command shares (mltelemetry.cliutil): one duration parser for every option that takes a duration."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mltelemetry.cli import app
from mltelemetry.cliutil import parse_duration_s
from mltelemetry.errors import UsageError

runner = CliRunner()


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25),
    ("1e3ms", 1.0),  # 1000 ms
    ("90s", 90.0),
    ("1.5", 1.5),  # a plain number is seconds
    ("15m", 900.0),  # 15 * 60
    (" 2H ", 7200.0),  # 2 * 3600; case and surrounding spaces do not matter
    ("12h", 43200.0),  # 12 * 3600
    ("31d", 2678400.0),  # 31 * 86400
    ("2w", 1209600.0),  # 2 * 7 * 86400
])
def test_durations_in_every_unit(text, seconds):
    assert parse_duration_s(text, "--last") == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("soon", "--last wants a duration such as 90s, 15m or 12h"),
    ("5x", "--last wants a duration such as"),
    ("", "--last wants a duration such as"),
    ("ms", "--last wants a duration such as"),
    ("5 m s", "--last wants a duration such as"),
    ("inf", "--last wants a finite duration above zero, not 'inf'"),
    ("nan", "--last wants a finite duration above zero"),
    ("1e400s", "--last wants a finite duration above zero"),
    ("0", "--last wants a finite duration above zero"),
    ("-5m", "--last wants a finite duration above zero"),
])
def test_what_is_no_duration_is_a_usage_error(text, message):
    with pytest.raises(UsageError, match=message) as refused:
        parse_duration_s(text, "--last")
    assert refused.value.exit_code == 2


def _error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_analyze_and_pm_align_take_the_same_durations(tmp_path):
    missing = str(tmp_path / "none.db")
    commands = {"--lookback": (["analyze"], ["--campaign", "c", "--source", missing]),
                "--last": (["pm", "align"], ["--source", missing])}
    for option, (name, arguments) in commands.items():
        command = [*name, *arguments]
        for duration in ("250ms", "90s", "15m", "12h", "31d", "2w", "1.5"):
            result = runner.invoke(app, [*command, option, duration])
            # the duration is taken: the command goes on to open the source, which is not there (a runtime error)
            assert result.exit_code == 1 and "no store at" in _error_line(result), (option, duration, result.output)
        result = runner.invoke(app, [*command, option, "5x"])
        assert result.exit_code == 2
        assert _error_line(result) == (f"error: {option} wants a duration such as 90s, 15m or 12h (units ms, s, m, h, "
                                       "d, w; a plain number is seconds), not '5x'")
        help_box = runner.invoke(app, [*name, "--help"], env={"COLUMNS": "300"}).output  # narrower: rich cuts words
        help_text = " ".join(help_box.replace("│", " ").split())
        assert "ms, s, m, h, d, w" in help_text, option


def test_a_bad_lookback_is_refused_before_an_oscar_import(tmp_path):
    (tmp_path / "oscar").mkdir()  # an empty folder: the import would fail at run time, were it started
    result = runner.invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "new.db"),
                                 "--import-oscar", str(tmp_path / "oscar"), "--lookback", "soon"])
    assert result.exit_code == 2 and "--lookback wants a duration" in _error_line(result)
    assert not (tmp_path / "new.db").exists()
