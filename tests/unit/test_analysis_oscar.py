"""OSCAR interoperability: measurement folders in OSCAR's real formats (every variant seen in the wild)
imported and analysed against hand-computed figures, export → import round trips, and bad input.

The generated measurement (seconds from 2024-03-05 14:00:00 local time; each power row holds for [s, s+1)):
- ``Baseline``: runs [10, 30) and [40, 60) at 50 W (the idle machine, 50 W everywhere outside runs);
- ``Leerlauf`` (idle mode): runs [100, 130) and [140, 170) at 60 W;
- ``Standardnutzungsszenario``: runs [200, 240) and [250, 290), each 80 W with the action
  ``open document`` at 150 W over its seconds 5 … 15.
collectl: CPU 10 %, 20 % in Leerlauf, 30 % in the standard runs and 70 % in their action; 4,000,000 KB used;
100 KB/s read in the action; 2 KB/s received throughout.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from test_analysis_figures import lab_store
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.analysis.oscar import (
    Clock,
    cell,
    export_oscar,
    import_oscar,
    oscar_figures,
    path_name,
    read_hardware,
    read_power,
)
from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

S = 10**9
DAY = datetime(2024, 3, 5, 14, 0, 0)
DAY_NS = int((DAY - datetime(1970, 1, 1)).total_seconds()) * S  # the local wall clock, stored as if UTC
ACTION = "open document"
SCENARIOS = {  # folder: (runs as (start, stop) seconds, the action's offset in each run or None)
    "Baseline": ([(10, 30), (40, 60)], None),
    "Leerlauf": ([(100, 130), (140, 170)], None),
    "Standardnutzungsszenario": ([(200, 240), (250, 290)], 5),
}
FILE_NAMES = {"Baseline": ("log.txt", "UMG604 export.csv", "collectl.csv"),
              "Leerlauf": ("aktionen_leerlauf.csv", "gridvis.txt", "hw.csv"),
              "Standardnutzungsszenario": ("wg.log", "leistung.csv", "collectl-sut.csv")}
END_S = 320


def phase(s: int) -> tuple[float, float, float]:
    """Watts, CPU % and KB/s read in second [s, s+1)."""
    for a, b in SCENARIOS["Leerlauf"][0]:
        if a <= s < b:
            return 60.0, 20.0, 0.0
    for a, b in SCENARIOS["Standardnutzungsszenario"][0]:
        if a + 5 <= s < a + 15:
            return 150.0, 70.0, 100.0
        if a <= s < b:
            return 80.0, 30.0, 0.0
    return 50.0, 10.0, 0.0


def stamp(seconds: float, variant: str) -> str:
    moment = DAY + timedelta(seconds=seconds)
    if variant == "loose":  # no leading zeros in month and day, no milliseconds
        return f"{moment.year}-{moment.month}-{moment.day} {moment:%H:%M:%S}"
    if variant == "rfc3339":  # date --rfc-3339=ns on a SUT in Central European Time
        return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond * 1000:09d}+01:00"
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def action_log(folder: str, variant: str) -> str:
    runs, offset = SCENARIOS[folder]
    lines = []
    for i, (a, b) in enumerate(runs, start=1):
        start_run, stop_run = "startTestrun", "stopTestrun"
        if variant == "fields":  # iteration field first, extra fields, startTestRun capitalised, spaces before names
            start_run, stop_run = f"startTestRun;;iteration {i}", "stopTestRun;"
        prefix = f"iteration {i};" if variant == "fields" else ""
        lines.append(f"{prefix}{stamp(a, variant)};{start_run}")
        if offset is not None:
            lines += [f"{prefix}{stamp(a + offset, variant)};startAction;  {ACTION}",
                      f"{prefix}{stamp(a + offset + 10, variant)};stopAction"]
        lines.append(f"{prefix}{stamp(b, variant)};{stop_run}")
    return "\n".join(lines) + "\n"


def power_file(watts=lambda s: phase(s)[0]) -> str:
    """GridVis' export: a title, the header, one row per second of the whole measurement, a trailing ;."""
    lines = ["Wert 1 : Wirkleistung L2 (1s) [UMG604]", "Nummer;Zeit;Wert 1-avg[W];Wert 1-min[W];Wert 1-max[W];"]
    for s in range(END_S):
        w = watts(s)
        cells = [f"{v:.3f}".replace(".", ",") for v in (w, w - 0.5, w + 0.5)] if isinstance(w, float) else [w] * 3
        lines.append(f"{s + 1};{DAY + timedelta(seconds=s):%d.%m.%y, %H:%M:%S};{';'.join(cells)};")
    return "\r\n".join(lines) + "\r\n"


def hardware_file(reverse: bool = False) -> bytes:
    """collectl formatted for OSCAR: BOM, CRLF, ;-separated, a row at the end of each second it describes."""
    columns = ["[CPU]User%", "[CPU]Nice%", "[CPU]Sys%", "[CPU]Wait%", "[CPU]Totl%", "[MEM]Tot", "[MEM]Used",
               "[NET]RxPktTot", "[NET]RxKBTot", "[NET]TxKBTot", "[DSK]ReadTot", "[DSK]ReadKBTot", "[DSK]WriteKBTot"]
    order = columns[::-1] if reverse else columns
    lines = ["Date Time;" + ";".join(order)]
    for s in range(END_S):
        _, cpu, read = phase(s)
        values = {c: "0" for c in columns}
        values.update({"[CPU]User%": f"{cpu - 1:g}", "[CPU]Totl%": f"{cpu:g}", "[MEM]Tot": "16000000",
                       "[MEM]Used": "4000000", "[NET]RxKBTot": "2", "[DSK]ReadKBTot": f"{read:g}"})
        lines.append(f"{DAY + timedelta(seconds=s + 1):%d.%m.%Y %H:%M:%S};" + ";".join(values[c] for c in order))
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def measurement(root: Path, variant: str = "canonical", folders=SCENARIOS) -> Path:
    for i, folder in enumerate(folders):
        actions, power, hardware = FILE_NAMES[folder]
        (root / folder).mkdir(parents=True)
        (root / folder / actions).write_text(action_log(folder, variant), encoding="utf-8")
        (root / folder / power).write_text(power_file(), encoding="utf-8", newline="")
        (root / folder / hardware).write_bytes(hardware_file(reverse=i % 2 == 1))
    return root


def by_key(result):
    return {(r["scenario"], r["run"], r["action"]): r for r in result.windows.to_dict(orient="records")}


@pytest.mark.parametrize("variant", ["canonical", "loose", "rfc3339", "fields"])
def test_a_real_format_measurement_imports_and_analyses_by_hand(tmp_path, variant):
    root = measurement(tmp_path / "oscar", variant)
    imported = import_oscar(root, tmp_path / "s.db", "m")
    assert imported.scenarios == {"baseline": ("Baseline", 2), "Leerlauf": ("Leerlauf", 2),
                                  "Standardnutzungsszenario": ("Standardnutzungsszenario", 2)}
    assert imported.events == 8  # 6 runs and 2 actions
    assert imported.power_seconds == END_S and imported.hardware_rows == END_S  # three copies, one timeline
    with Store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "m")
        oscar = oscar_figures(store, result).set_index("scenario")
    rows = by_key(result)
    assert result.baseline_power_w == pytest.approx(50.0)  # 2 × 20 s at 50 W
    idle = rows[("Leerlauf", 1, "run")]
    assert idle["start"] == "2024-03-05T14:01:40+00:00"  # the SUT's local wall clock, stored as UTC
    assert idle["energy_wh"] == pytest.approx(30 * 60 / 3600)
    assert idle["induced_wh"] == pytest.approx((30 * 60 - 30 * 50) / 3600)
    run = rows[("Standardnutzungsszenario", 2, "run")]
    assert run["duration_s"] == 40.0
    assert run["energy_wh"] == pytest.approx((10 * 150 + 30 * 80) / 3600)  # 3900 J
    assert run["induced_wh"] == pytest.approx((3900 - 40 * 50) / 3600)
    action = rows[("Standardnutzungsszenario", 2, ACTION)]  # the name without its leading spaces
    assert action["energy_wh"] == pytest.approx(10 * 150 / 3600)
    assert action["induced_wh"] == pytest.approx((1500 - 10 * 50) / 3600)
    assert run["cpu_utilization"] == pytest.approx((10 * 0.7 + 30 * 0.3) / 40)
    assert run["memory_used_bytes"] == pytest.approx(4_000_000 * 1024)
    assert run["disk_read_bytes"] == pytest.approx(10 * 100 * 1024)
    assert run["net_received_bytes"] == pytest.approx(40 * 2 * 1024)
    assert run["disk_written_bytes"] == 0.0 and not run["flagged"]
    # OSCAR's figures: Σ per-second watts / 3600 per run, and corrected = minus the mean baseline run's energy
    assert oscar.loc["baseline", "oscar_energy_wh"] == pytest.approx(20 * 50 / 3600)
    assert oscar.loc["Leerlauf", "oscar_corrected_wh"] == pytest.approx((1800 - 1000) / 3600)  # vs induced 300 J
    assert oscar.loc["Leerlauf", "induced_wh"] == pytest.approx(300 / 3600)
    assert oscar.loc["Standardnutzungsszenario", "oscar_mean_power_w"] == pytest.approx(3900 / 40)
    assert oscar.loc["Standardnutzungsszenario", "oscar_corrected_wh"] == pytest.approx((3900 - 1000) / 3600)
    assert oscar.loc["Standardnutzungsszenario", "energy_wh"] == pytest.approx(3900 / 3600)
    assert list(oscar.runs) == [2, 2, 2] and list(oscar.missing_s) == [0, 0, 0]


def test_fractional_stamps_interpolate_where_oscar_counts_whole_seconds(tmp_path):
    root = measurement(tmp_path / "oscar", folders=["Baseline"])
    log = root / "Baseline" / "log.txt"
    log.write_text(log.read_text() + "2024-03-05 14:03:20.250;startTestrun\n2024-03-05 14:03:30.750;stopTestrun\n")
    (root / "Baseline" / "UMG604 export.csv").write_text(power_file(lambda s: 100.0 if s == 200 else 50.0))
    import_oscar(root, tmp_path / "s.db", "m")
    with Store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "m")
        oscar = oscar_figures(store, result)
    third = by_key(result)[("baseline", 3, "run")]
    # 200.25 … 210.75 s: 0.75 s at 100 W, then 9.75 s at 50 W
    assert third["energy_wh"] == pytest.approx((0.75 * 100 + 9.75 * 50) / 3600)
    # OSCAR sums the rows stamped 201 … 210 s (start ≤ t < stop): 10 × 50 W; runs 1 and 2: 20 × 50 W each
    assert oscar.oscar_energy_wh[0] == pytest.approx((1000 + 1000 + 500) / 3 / 3600)


def test_actions_named_per_epoch_become_epochs_and_reserved_names_stay_actions(tmp_path):
    root = measurement(tmp_path / "oscar", folders=["Baseline"])
    (root / "Baseline" / "log.txt").write_text(
        "2024-03-05 14:00:10.000;startTestrun\n2024-03-05 14:00:10.000;startAction;Epoch 1\n"
        "2024-03-05 14:00:20.000;stopAction\n2024-03-05 14:00:20.000;startAction;epoch 2\n"
        "2024-03-05 14:00:25.000;stopAction\n2024-03-05 14:00:25.000;startAction;Run\n"
        "2024-03-05 14:00:30.000;stopAction\n2024-03-05 14:00:30.000;stopTestrun\n")
    import_oscar(root, tmp_path / "s.db", "m")
    with Store(tmp_path / "s.db") as store:
        windows = analyze_campaign(store, "m").windows
    assert [(a, e) for a, e in zip(windows.action, windows.epoch.fillna(0))] == [
        ("run", 0), ("epoch", 1), ("epoch", 2), ("Run (action)", 0)]
    assert list(windows.energy_wh) == pytest.approx([20 * 50 / 3600, 10 * 50 / 3600, 5 * 50 / 3600, 5 * 50 / 3600])


def test_timezone_makes_the_stamps_utc_and_checks_their_offsets(tmp_path):
    root = measurement(tmp_path / "oscar", "rfc3339")
    import_oscar(root, tmp_path / "s.db", "m", timezone="Europe/Berlin")
    with Store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "m")
    idle = by_key(result)[("Leerlauf", 1, "run")]
    assert idle["start"] == "2024-03-05T13:01:40+00:00"  # 14:01:40 CET is 13:01:40 UTC
    assert idle["energy_wh"] == pytest.approx(30 * 60 / 3600)  # the power file (no offsets) moved with it
    summer = tmp_path / "summer"
    measurement(summer, "rfc3339", folders=["Baseline"])
    log = summer / "Baseline" / "log.txt"
    log.write_text(log.read_text().replace("+01:00", "+02:00"))
    with pytest.raises(MltelemetryError, match=r"log\.txt:1: .*its offset \+02:00 is not Europe/Berlin's \(\+01:00\)"):
        import_oscar(summer, tmp_path / "t.db", "m", timezone="Europe/Berlin")
    with pytest.raises(MltelemetryError, match="--timezone 'Mars/Olympus'"):
        import_oscar(root, tmp_path / "t.db", "m", timezone="Mars/Olympus")


def test_the_repeated_hour_when_daylight_saving_time_ends_is_told_apart_with_a_timezone(tmp_path):
    # 2024-10-27 in Berlin: 02:59:59 CEST (00:59:59 UTC) is followed by 02:00:00 CET (01:00:00 UTC)
    utc = datetime(2024, 10, 27, 0, 59, 50)
    local = [utc + timedelta(seconds=s, hours=2 if s < 10 else 1) for s in range(20)]  # 02:59:50 … 02:00:09
    folder = tmp_path / "oscar" / "Nacht"
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text(f"{local[7]:%Y-%m-%d %H:%M:%S};startTestrun\n"  # 02:59:57, the first pass
                                    f"{local[13]:%Y-%m-%d %H:%M:%S};stopTestrun\n")  # 02:00:03, the second
    (folder / "power.csv").write_text("Nummer;Zeit;Wert 1-avg[W];\n" + "".join(
        f"{s + 1};{moment:%d.%m.%y, %H:%M:%S};{10 * (s + 1)},0;\n" for s, moment in enumerate(local)))
    import_oscar(tmp_path / "oscar", tmp_path / "s.db", "m", timezone="Europe/Berlin")
    with Store(tmp_path / "s.db") as store:
        run = by_key(analyze_campaign(store, "m"))[("Nacht", 1, "run")]
    assert run["start"] == "2024-10-27T00:59:57+00:00" and run["duration_s"] == 6.0
    assert run["energy_wh"] == pytest.approx((80 + 90 + 100 + 110 + 120 + 130) / 3600)  # rows 8 … 13
    with pytest.raises(MltelemetryError, match=r"log\.txt:2: the time goes back from the line before \(the night "
                                               "daylight saving time ends"):
        import_oscar(tmp_path / "oscar", tmp_path / "t.db", "m")  # without the zone the hour cannot be told apart


def test_the_baseline_folder_is_found_by_name_or_named(tmp_path):
    root = measurement(tmp_path / "oscar", folders=["Leerlauf", "Standardnutzungsszenario"])
    imported = import_oscar(root, tmp_path / "a.db", "m", baseline="leerlauf")
    assert list(imported.scenarios) == ["baseline", "Standardnutzungsszenario"]
    with Store(tmp_path / "a.db") as store:
        assert analyze_campaign(store, "m").baseline_power_w == pytest.approx(60.0)
    imported = import_oscar(root, tmp_path / "b.db", "m")  # no baseline: imported, no induced energy
    with Store(tmp_path / "b.db") as store:
        assert analyze_campaign(store, "m").baseline_power_w is None
    with pytest.raises(MltelemetryError, match=r"--baseline 'Grundlast': no such scenario folder \(there: Leerlauf, "):
        import_oscar(root, tmp_path / "c.db", "m", baseline="Grundlast")


def test_one_scenario_folder_given_directly(tmp_path):
    root = measurement(tmp_path / "oscar", folders=["Leerlauf"])
    (root / "Leerlauf" / "notes.txt").write_text("measured by hand\n")  # anything else in the folder is ignored
    (root / "Leerlauf" / "hw.csv").unlink()  # no collectl file: power and events still, no hardware figures
    imported = import_oscar(root / "Leerlauf", tmp_path / "s.db", "m")
    assert imported.scenarios == {"Leerlauf": ("Leerlauf", 2)}
    assert imported.notes == [f"{root / 'Leerlauf'} has no collectl file: no hardware figures for 'Leerlauf'"]
    with Store(tmp_path / "s.db") as store:
        run = by_key(analyze_campaign(store, "m"))[("Leerlauf", 1, "run")]
    assert run["energy_wh"] == pytest.approx(30 * 60 / 3600) and np.isnan(run["cpu_utilization"])


def _broken(tmp_path: Path, file: str, edit) -> Path:
    root = measurement(tmp_path / "oscar", folders=["Baseline", "Leerlauf"])
    path = root / "Leerlauf" / file
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _set(index: int, text: str):
    def edit(lines):
        lines[index] = text
    return edit


def _insert(index: int, *texts: str):
    def edit(lines):
        lines[index:index] = texts
    return edit


BAD = [  # (file, edit, the one line expected after 'PATH:')
    ("aktionen_leerlauf.csv", _set(0, "05/03/2024 14:01:40;startTestrun"),
     ":1: '05/03/2024 14:01:40': not a time stamp; expected a time stamp such as 2024-03-05 14:02:11.250"),
    ("aktionen_leerlauf.csv", _set(0, "9999-03-05 14:01:40.000;startTestrun"),
     ":1: '9999-03-05 14:01:40.000': year 9999 is outside 1970–2261; expected a time stamp"),
    ("aktionen_leerlauf.csv", _set(0, "1000-03-05 14:01:40.000;startTestrun"), ":1: '1000-03-05 14:01:40.000': year"),
    ("aktionen_leerlauf.csv", _set(0, "12345678901234567890;startTestrun"),
     ":1: '12345678901234567890': not a time stamp"),
    ("aktionen_leerlauf.csv", _set(1, "2024-03-05 14:02:10.000;startTest"),
     ":2: expected 'time stamp;startTestrun|startAction;NAME|stopAction|stopTestrun', found "
     "'2024-03-05 14:02:10.000;startTest'"),
    ("aktionen_leerlauf.csv", _insert(1, "2024-03-05 14:01:45.000;stopAction"),
     ":2: stopAction without a startAction"),
    ("aktionen_leerlauf.csv", _insert(1, "2024-03-05 14:01:45.000;startAction"),
     ":2: startAction without a name; expected 'time stamp;startAction;NAME'"),
    ("aktionen_leerlauf.csv", _insert(1, "2024-03-05 14:01:45.000;startAction;a",
                                      "2024-03-05 14:01:46.000;startAction;b"),
     ":3: startAction 'b' while 'a' is still running (actions do not nest: expected stopAction first)"),
    ("aktionen_leerlauf.csv", lambda lines: lines.pop(), ":3: this run has no stopTestrun"),
    ("aktionen_leerlauf.csv", _set(1, "2024-03-05 14:01:39.000;stopTestrun"),
     ":2: the time goes back from the line before"),
    ("gridvis.txt", _set(7, "6;05.03.24, 14:00:05;-100,000;-100,5;-99,5;"),
     ": 1 implausible power reading(s) (negative, not finite or above 100000 W), the first at line 8: '-100,000'; "
     "nothing imported"),
    ("gridvis.txt", lambda lines: [_set(7, "6;05.03.24, 14:00:05;1e308;;;")(lines),
                                   _set(9, "8;05.03.24, 14:00:07;inf;;;")(lines)],
     ": 2 implausible power reading(s) (negative, not finite or above 100000 W), the first at line 8: '1e308'"),
    ("gridvis.txt", _set(7, "6;05.03.9999, 14:00:05;50,000;;;"), ":8: '05.03.9999, 14:00:05': year 9999 is outside"),
    ("gridvis.txt", _set(7, "6;05.03.24, 14:00:05;fünfzig;;;"), ":8: expected watts such as 12,345, found 'fünfzig'"),
    ("gridvis.txt", _set(7, "6;05.03.24, 14:00:03;50,000;;;"),
     ":8: time stamp '05.03.24, 14:00:03' repeats or goes back; expected one row per second, in order (the night "
     "daylight saving time ends? --timezone tells the repeated hour's two passes apart)"),
    ("hw.csv", _set(5, "05.03.2024 14:00:05;0;0;0;0;2;0;4000000;16000000;250;0;0;0;249"),
     ":6: column [CPU]Totl%: '250' is implausible (expected 0–100); nothing imported"),
]


@pytest.mark.parametrize(("file", "edit", "expected"), BAD, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD)])
def test_bad_input_is_one_line_with_file_line_and_expectation_and_nothing_is_stored(tmp_path, file, edit, expected):
    path = _broken(tmp_path, file, edit)
    with Store(tmp_path / "s.db") as store:  # a store that already holds a campaign keeps it, untouched
        store.write([Sample(schema.PM_ENERGY, {"host": "h", "meter": "m"}, 1.0, DAY_NS)])
        store.write_events([Event("before", "x", 1, "run", DAY_NS, DAY_NS + S)])
    result = CliRunner().invoke(app, ["analyze", "--campaign", "m", "--source", str(tmp_path / "s.db"),
                                      "--import-oscar", str(tmp_path / "oscar")])
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"error: {path}{expected}"), result.output
    assert len(result.output.strip().splitlines()) == 1
    with Store(tmp_path / "s.db") as store:
        assert store.campaigns() == ["before"] and len(store.series()) == 1


def test_missing_and_doubled_files_name_the_folder(tmp_path):
    root = measurement(tmp_path / "oscar", folders=["Leerlauf"])
    (root / "Leerlauf" / "copy.csv").write_text((root / "Leerlauf" / "gridvis.txt").read_text())
    with pytest.raises(MltelemetryError, match=r"Leerlauf holds 2 power files \(copy\.csv, gridvis\.txt\)"):
        import_oscar(root, tmp_path / "s.db", "m")
    (root / "Leerlauf" / "copy.csv").unlink()
    (root / "Leerlauf" / "gridvis.txt").unlink()
    with pytest.raises(MltelemetryError, match=r"Leerlauf has an action log but no power file"):
        import_oscar(root, tmp_path / "s.db", "m")
    (root / "Leerlauf" / "aktionen_leerlauf.csv").unlink()
    with pytest.raises(MltelemetryError, match=r"Leerlauf has a hardware file but no action log"):
        import_oscar(root, tmp_path / "s.db", "m")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(MltelemetryError, match="holds no OSCAR measurement"):
        import_oscar(tmp_path / "empty", tmp_path / "s.db", "m")


def test_scenarios_that_disagree_or_overlap_are_not_one_measurement(tmp_path):
    root = measurement(tmp_path / "oscar", folders=["Baseline", "Leerlauf"])
    (root / "Leerlauf" / "gridvis.txt").write_text(power_file(lambda s: 51.0 if s == 3 else phase(s)[0]))
    with pytest.raises(MltelemetryError, match=r"give different values for the same second \(2024-03-05 14:00:03\)"):
        import_oscar(root, tmp_path / "s.db", "m")
    (root / "Leerlauf" / "gridvis.txt").write_text(power_file())
    log = root / "Leerlauf" / "aktionen_leerlauf.csv"
    log.write_text(log.read_text().replace("14:0", "15:0"))  # an hour after the power files' end: imported, said
    imported = import_oscar(root, tmp_path / "s.db", "m")
    assert imported.notes == ["2 run(s) of 'Leerlauf' have no power reading (the power files cover 2024-03-05 "
                              "14:00:00 – 14:05:20): another day's file, or another clock?"]
    (root / "Leerlauf" / "aktionen_leerlauf.csv").write_text(
        "2024-03-05 14:00:20.000;startTestrun\n2024-03-05 14:00:50.000;stopTestrun\n")
    with pytest.raises(MltelemetryError, match=r"aktionen_leerlauf\.csv:1: this run of 'Leerlauf' overlaps a run of "
                                               r"'baseline'"):
        import_oscar(root, tmp_path / "t.db", "m")


def test_blank_power_cells_are_a_gap_not_a_flat_counter(tmp_path):
    root = measurement(tmp_path / "oscar", folders=["Leerlauf"])
    (root / "Leerlauf" / "gridvis.txt").write_text(power_file(lambda s: "" if 110 <= s < 120 else phase(s)[0]))
    import_oscar(root, tmp_path / "s.db", "m")
    with Store(tmp_path / "s.db") as store:
        result = analyze_campaign(store, "m")
        oscar = oscar_figures(store, result)
    run = by_key(result)[("Leerlauf", 1, "run")]  # 100 … 130 s with 10 blank seconds
    assert run["meter_gap_s"] == pytest.approx(10.0)
    assert run["flagged"] and "no valid reading for 10.0 s" in run["note"]
    assert run["energy_wh"] == pytest.approx(20 * 60 / 3600)  # what was measured, marked under-counted
    assert oscar.missing_s[0] == 10 and oscar.oscar_energy_wh[0] == pytest.approx((20 * 60 + 30 * 60) / 2 / 3600)


def test_collectls_own_plot_format_reads_too(tmp_path):
    path = tmp_path / "plot.csv"
    path.write_text("#Date;Time;[CPU]Totl%;[DSK]ReadKBTot\n20240305;14:00:01;10;0\n20240305;14:00:02;12.5;4\n")
    rows = read_hardware(path, Clock())
    assert rows == {DAY_NS + S: {"[CPU]Totl%": 10.0, "[DSK]ReadKBTot": 0.0},
                    DAY_NS + 2 * S: {"[CPU]Totl%": 12.5, "[DSK]ReadKBTot": 4.0}}


def test_blank_collectl_cells_are_a_gap_in_the_byte_counter(tmp_path):
    root = measurement(tmp_path / "oscar", folders=["Standardnutzungsszenario"])
    path = root / "Standardnutzungsszenario" / "collectl-sut.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    column = lines[0].split(";").index("[DSK]ReadKBTot")
    for s in range(203, 209):  # the rows of the seconds 203 … 208 (stamped at their ends) lose their disk cell
        fields = lines[s + 1].split(";")
        fields[column] = ""
        lines[s + 1] = ";".join(fields)
    path.write_text("\n".join(lines) + "\n")
    import_oscar(root, tmp_path / "s.db", "m")
    with Store(tmp_path / "s.db") as store:
        rows = by_key(analyze_campaign(store, "m"))
    # the run holds the whole gap: the 6 read seconds with numbers (209 … 214 s at 100 KB/s); the 4 blank ones
    # inside the action (205 … 208 s) are unknown and count none
    assert rows[("Standardnutzungsszenario", 1, "run")]["disk_read_bytes"] == pytest.approx(6 * 100 * 1024)
    # the action starts inside the 7 s between the counter's samples at 203 and 210 s: no figure, not a guess
    assert np.isnan(rows[("Standardnutzungsszenario", 1, ACTION)]["disk_read_bytes"])
    assert rows[("Standardnutzungsszenario", 2, ACTION)]["disk_read_bytes"] == pytest.approx(10 * 100 * 1024)


# --- export ------------------------------------------------------------------------------------------------
ORIGIN_NS = 1_795_770_000 * S  # 2026-11-27 09:00:00 UTC


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    lab_store(tmp / "lab.db", ORIGIN_NS).close()
    return tmp


def test_export_writes_oscar_formats_that_import_reads_back_with_the_same_figures(lab, tmp_path):
    # local time of Berlin out and back in: 09:00 UTC is 10:00 in the files
    out = CliRunner().invoke(app, ["analyze", "--campaign", "lab", "--source", str(lab / "lab.db"), "--format", "json",
                                   "--export-oscar", str(tmp_path / "oscar"), "--timezone", "Europe/Berlin"])
    assert out.exit_code == 0, out.output
    assert "9 epoch window(s) not written: OSCAR's actions do not nest" in out.output
    cnn = tmp_path / "oscar" / "cnn"
    actions = (cnn / "actions.csv").read_text().splitlines()
    assert actions[:8] == ["2026-11-27 10:00:30.000;startTestrun", "2026-11-27 10:00:30.000;startAction;prepare_data",
                           "2026-11-27 10:00:35.000;stopAction", "2026-11-27 10:00:35.000;startAction;train",
                           "2026-11-27 10:01:05.000;stopAction", "2026-11-27 10:01:05.000;startAction;cleanup",
                           "2026-11-27 10:01:10.000;stopAction", "2026-11-27 10:01:10.000;stopTestrun"]
    power = (cnn / "power.csv").read_bytes().decode().split("\r\n")
    assert power[1] == "Nummer;Zeit;Wert 1-avg[W];Wert 1-min[W];Wert 1-max[W];"
    assert power[2] == "1;27.11.26, 10:00:20;100,000;;;"  # 10 s before the first run; min and max unknown
    assert "18;27.11.26, 10:00:37;180,000;;;" in power  # the first epoch of run 1
    hardware = (cnn / "collectl.csv").read_bytes()
    assert hardware.startswith("\ufeffDate Time;[CPU]Totl%;".encode()) and b"\r\n" in hardware
    row = next(line for line in hardware.decode("utf-8-sig").splitlines() if line.startswith("27.11.2026 10:00:32"))
    # the second 31 … 32 s: preparing data (30 % CPU, 6e9 B used, 1000 B/s read, 2000 B/s received, 100 B/s sent)
    assert row.split(";")[1:] == ["30", "70", "5859375", "0,976562", "", "1,953125", "0,097656"]

    back = CliRunner().invoke(app, ["analyze", "--campaign", "again", "--source", str(tmp_path / "new.db"),
                                    "--import-oscar", str(tmp_path / "oscar"), "--timezone", "Europe/Berlin",
                                    "--format", "json"])
    assert back.exit_code == 0, back.output
    imported = json.loads(back.output[back.output.index("{"):])
    with Store(lab / "lab.db") as store:
        original = analyze_campaign(store, "lab")
        original_oscar = oscar_figures(store, original).set_index("scenario")
    got = {(r["scenario"], r["run"], r["action"]): r for r in imported["windows"]}
    expected = original.windows[original.windows.action != "epoch"].to_dict(orient="records")
    assert len(got) == len(expected) == 6 + 9 + 3  # runs, the cnn runs' 3 actions, the baseline runs' action
    for row in expected:
        again = got[(row["scenario"], row["run"], row["action"])]
        assert again["start"] == row["start"]  # the same instants in UTC
        for figure in ("duration_s", "energy_wh", "induced_wh", "cpu_utilization", "memory_used_bytes",
                       "disk_read_bytes", "net_received_bytes", "net_transmitted_bytes"):
            assert again[figure] == pytest.approx(row[figure], rel=1e-4, abs=1e-9), (row["action"], figure)
        assert again["disk_written_bytes"] is None and again["gpu_energy_wh"] is None  # never recorded, no number
    assert imported["baseline_power_w"] == pytest.approx(100.0)
    for figures in imported["oscar"]["scenarios"]:
        for name in ("oscar_energy_wh", "oscar_mean_power_w", "oscar_corrected_wh", "energy_wh", "induced_wh"):
            assert figures[name] == pytest.approx(original_oscar.loc[figures["scenario"], name])
    cnn_oscar = original_oscar.loc["cnn"]  # run 1: 7150 J, run 2: 5×120 + 10×(190+210+230) + 5×110 = 7450 J, …
    assert cnn_oscar.oscar_energy_wh == pytest.approx((7150 + 7450 + 6850) / 3 / 3600)
    assert cnn_oscar.oscar_corrected_wh == pytest.approx((7150 + 7450 + 6850) / 3 / 3600 - 1000 / 3600)
    assert "mean run energy − mean baseline run energy" in imported["oscar"]["labels"]["oscar_corrected_wh"]


def test_export_names_stay_inside_the_folder_unique_and_reimportable(tmp_path):
    events, samples = [], []
    for i, scenario in enumerate(["..", "a/b", "a_b", "baseline"]):
        a = ORIGIN_NS + (10 + 40 * i) * S
        events += [Event("c", scenario, 1, "run", a, a + 20 * S),
                   Event("c", scenario, 1, "x;y\nstartTestrun", a + 5 * S, a + 10 * S)]
    samples = [Sample(schema.PM_ENERGY, {"host": "h", "meter": "m"}, 100.0 * t, ORIGIN_NS + t * S) for t in range(200)]
    with Store(tmp_path / "s.db") as store:
        store.write(samples)
        store.write_events(events)
        exported = export_oscar(store, "c", tmp_path / "out" / "oscar")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["oscar"]  # nothing beside it
    assert sorted(p.name for p in (tmp_path / "out" / "oscar").iterdir()) == ["_.", "a_b", "a_b-2", "baseline"]
    assert "scenario 'a_b' written to the folder 'a_b-2'" in exported.notes
    assert ".. run 1: action 'x;y\\nstartTestrun' written as 'x_y_startTestrun'" in exported.notes
    imported = import_oscar(tmp_path / "out" / "oscar", tmp_path / "back.db", "c")
    assert set(imported.scenarios) == {"_.", "a_b", "a_b-2", "baseline"} and imported.events == 8
    with Store(tmp_path / "back.db") as store:
        actions = {e.action for e in store.events("c") if e.action != "run"}
    assert actions == {"x_y_startTestrun"}


def test_path_and_cell_rules():
    assert [path_name(n) for n in ["..", ".", "", "a/b", "..\\x", ".hidden", "Leerlauf"]] == \
        ["_.", "_", "_", "a_b", "_._x", "_hidden", "Leerlauf"]
    assert [cell(n) for n in ["a;b", " x\r\ny ", "\t", "öffnen"]] == ["a_b", "x__y", "_", "öffnen"]


def test_export_refuses_a_file_or_a_folder_with_something_in_it(lab, tmp_path):
    (tmp_path / "file").write_text("keep me\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old").mkdir()
    for target, message in (("file", "is a file"), ("full", "is not empty")):
        result = CliRunner().invoke(app, ["analyze", "--campaign", "lab", "--source", str(lab / "lab.db"),
                                          "--export-oscar", str(tmp_path / target)])
        assert result.exit_code == 1
        assert result.output.strip() == (f"error: --export-oscar {tmp_path / target}: {message}; give a new or empty "
                                         "folder" + (" (an import reads every sub-folder)" if target == "full" else ""))
    assert (tmp_path / "file").read_text() == "keep me\n"


def test_export_of_a_resumed_campaign_takes_the_run_that_succeeded(tmp_path):
    def at(s: float) -> int:
        return ORIGIN_NS + int(s * S)

    events = [Event("c", "x", 1, "run", at(10), at(20), status="aborted"), Event("c", "x", 1, "a", at(10), at(15)),
              Event("c", "x", 1, "run", at(30), at(60)), Event("c", "x", 1, "a", at(35), at(45)),
              Event("c", "x", 2, "run", at(70), at(80), status="failed")]
    with Store(tmp_path / "s.db") as store:
        store.write([Sample(schema.PM_ENERGY, {"host": "h", "meter": "m"}, 100.0 * t, at(t)) for t in range(100)])
        store.write_events(events)
        exported = export_oscar(store, "c", tmp_path / "oscar")
    assert (tmp_path / "oscar" / "x" / "actions.csv").read_text().splitlines() == [
        "2026-11-27 09:00:30.000;startTestrun", "2026-11-27 09:00:35.000;startAction;a",
        "2026-11-27 09:00:45.000;stopAction", "2026-11-27 09:01:00.000;stopTestrun"]
    assert exported.notes == ["2 run(s) not ok left out (x run 1: aborted, x run 2: failed); OSCAR gets the ok ones"]


def test_export_leaves_the_seconds_of_a_meter_gap_empty(tmp_path):
    # 100 W; the meter's counter has no samples from 21 s to 38 s (20 … 39 s: a 19 s gap), the run is 10 … 50 s
    samples = [Sample(schema.PM_ENERGY, {"host": "h", "meter": "m"}, 100.0 * t, ORIGIN_NS + t * S)
               for t in range(61) if not 20 < t < 39]
    with Store(tmp_path / "s.db") as store:
        store.write(samples)
        store.write_events([Event("c", "x", 1, "run", ORIGIN_NS + 10 * S, ORIGIN_NS + 50 * S)])
        export_oscar(store, "c", tmp_path / "oscar")
    rows = read_power(tmp_path / "oscar" / "x" / "power.csv", Clock())
    watts = {(t - ORIGIN_NS) // S: w for t, w in rows.items()}
    assert watts[19] == 100.0 and watts[39] == 100.0
    # how the energy fell inside the gap is unknown: no number, not 19 s spread evenly at 100 W
    assert all(np.isnan(watts[t]) for t in range(20, 39))


def test_export_blanks_the_seconds_without_a_valid_reading_and_the_import_flags_them(tmp_path):
    # 100 W; the meter gave no valid reading from 20 to 25 s: its energy counter stood still, its gap counter rose
    labels = {"host": "h", "meter": "m"}
    energy = np.cumsum([0.0] + [0.0 if 20 <= t < 25 else 100.0 for t in range(60)])
    samples = [Sample(schema.PM_ENERGY, labels, energy[t], ORIGIN_NS + t * S) for t in range(61)]
    samples += [Sample(schema.PM_GAP, labels, float(min(max(t - 20, 0), 5)), ORIGIN_NS + t * S) for t in range(61)]
    with Store(tmp_path / "s.db") as store:
        store.write(samples)
        store.write_events([Event("c", "x", 1, "run", ORIGIN_NS + 10 * S, ORIGIN_NS + 50 * S)])
        original = by_key(analyze_campaign(store, "c"))[("x", 1, "run")]
        export_oscar(store, "c", tmp_path / "oscar")
    watts = {(t - ORIGIN_NS) // S: w for t, w in read_power(tmp_path / "oscar" / "x" / "power.csv", Clock()).items()}
    # 20 … 24 s: not 0 W but unknown; 60 s lies past the last sample
    assert [t for t, w in watts.items() if np.isnan(w)] == [20, 21, 22, 23, 24, 60]
    assert watts[19] == watts[25] == 100.0
    import_oscar(tmp_path / "oscar", tmp_path / "back.db", "c")
    with Store(tmp_path / "back.db") as store:
        back = by_key(analyze_campaign(store, "c"))[("x", 1, "run")]
    assert back["meter_gap_s"] == original["meter_gap_s"] == 5.0 and back["flagged"] and original["flagged"]
    assert back["energy_wh"] == pytest.approx(original["energy_wh"]) == 35 * 100 / 3600


def test_cli_shows_oscar_figures_labelled_beside_ours(tmp_path):
    root = measurement(tmp_path / "oscar")
    result = CliRunner().invoke(app, ["analyze", "--campaign", "m", "--source", str(tmp_path / "s.db"),
                                      "--import-oscar", str(root), "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "index.html").read_text()  # analysed like any campaign, report included
    assert "Standardnutzungsszenario" in report and (tmp_path / "report" / "figures" / "energy_overview.png").exists()
    assert "imported campaign m: baseline (Baseline, 2 runs), Leerlauf (2 runs), Standardnutzungsszenario (2 runs)" \
        in result.output
    assert "OSCAR's figures beside mltelemetry's" in result.output
    assert "oscar_corrected_wh: OSCAR: mean run energy − mean baseline run energy (not adjusted for duration)" \
        in result.output
    again = CliRunner().invoke(app, ["analyze", "--campaign", "m", "--source", str(tmp_path / "s.db"),
                                     "--oscar-figures", "--format", "json"])
    figures = {r["scenario"]: r for r in json.loads(again.output)["oscar"]["scenarios"]}
    assert figures["Leerlauf"]["oscar_corrected_wh"] == pytest.approx(800 / 3600)
    assert figures["Leerlauf"]["induced_wh"] == pytest.approx(300 / 3600)
    for options, message in ((["--oscar-figures", "--format", "csv"], "--oscar-figures shows a table or JSON"),
                             (["--baseline", "Leerlauf"], "--baseline names the baseline folder of --import-oscar"),
                             (["--timezone", "UTC"], "--timezone is the OSCAR files' local time")):
        refused = CliRunner().invoke(app, ["analyze", "--campaign", "m", "--source", str(tmp_path / "s.db"), *options])
        assert refused.exit_code == 2 and refused.output.startswith(f"error: {message}"), refused.output
