"""OSCAR interoperability: the lab campaign out as OSCAR's three input files, and back in as a campaign."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest
from test_analysis_figures import S, lab_store
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.analysis.oscar import export_oscar, import_oscar
from mltelemetry.cli import app
from mltelemetry.errors import MltelemetryError
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

ORIGIN_NS = 1_795_770_000 * S  # 2026-11-27 09:00:00 UTC


def stamp(seconds: float, millis: bool = True) -> str:
    moment = datetime.fromtimestamp(ORIGIN_NS / S + seconds, timezone.utc)
    return moment.strftime("%d.%m.%Y %H:%M:%S") + (",000" if millis else "")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oscar")
    lab_store(tmp / "lab.db", ORIGIN_NS).close()
    result = CliRunner().invoke(app, ["analyze", "--campaign", "lab", "--source", str(tmp / "lab.db"),
                                      "--export-oscar", str(tmp / "oscar"), "--format", "json"])
    assert result.exit_code == 0, result.output
    return tmp


def test_export_writes_the_three_files_per_scenario(exported):
    oscar = exported / "oscar"
    assert sorted(p.name for p in oscar.iterdir()) == ["baseline", "cnn"]
    actions = (oscar / "cnn" / "actions.csv").read_text().splitlines()
    assert actions[:8] == ["Zeitstempel;Aktion", f"{stamp(30)};startTestrun", f"{stamp(30)};prepare_data",
                           f"{stamp(35)};train", f"{stamp(35)};epoch 1", f"{stamp(45)};epoch 2",
                           f"{stamp(55)};epoch 3", f"{stamp(65)};cleanup"]
    assert actions[8] == f"{stamp(70)};stopTestrun"
    power = (oscar / "cnn" / "power.csv").read_text().splitlines()
    assert power[0] == "Zeitstempel;Wirkleistung [W]"
    assert power[1] == f"{stamp(20, False)};100,00"  # 10 s before the first run
    assert f"{stamp(30, False)};120,00" in power and f"{stamp(47, False)};200,00" in power
    collectl = (oscar / "cnn" / "collectl.csv").read_text().splitlines()
    assert collectl[0] == ("#Date Time [CPU]Totl% [CPU]Idle% [MEM]Used [DSK]ReadKBTot [DSK]WriteKBTot "
                           "[NET]RxKBTot [NET]TxKBTot")
    # the second 31 … 32 s: preparing data (30 % CPU, 1000 B/s read, 2000 B/s received, 100 B/s sent)
    row = next(line for line in collectl
               if line.startswith(datetime.fromtimestamp(ORIGIN_NS / S + 32, timezone.utc).strftime("%Y%m%d %H:%M:%S")))
    assert row.split()[2:] == ["30", "70", "5859375", "0.976562", "nan", "1.953125", "0.097656"]


def test_import_gives_back_the_campaign(exported, tmp_path):
    result = CliRunner().invoke(app, ["analyze", "--campaign", "again", "--source", str(tmp_path / "new.db"),
                                      "--import-oscar", str(exported / "oscar"), "--format", "json"])
    assert result.exit_code == 0, result.output
    imported = json.loads(result.output[result.output.index("{"):])
    with Store(exported / "lab.db") as store:
        original = analyze_campaign(store, "lab").windows

    def key(row):
        return (row["scenario"], row["run"], row["action"], row["epoch"] if row["epoch"] is not None else np.nan)

    got = {str(key(r)): r for r in imported["windows"]}
    assert len(got) == len(original)
    for row in original.to_dict(orient="records"):
        back = got[str(key(row))]
        for figure in ("duration_s", "energy_wh", "induced_wh", "cpu_utilization", "memory_used_bytes",
                       "disk_read_bytes", "net_received_bytes", "net_transmitted_bytes"):
            assert back[figure] == pytest.approx(row[figure], rel=1e-5, abs=1e-9), (key(row), figure)
        assert back["gpu_energy_wh"] is None  # OSCAR's files carry no GPU series
    assert imported["baseline_power_w"] == pytest.approx(100.0)


def test_bad_oscar_input_is_one_clear_line(exported, tmp_path):
    broken = tmp_path / "broken" / "cnn"
    broken.mkdir(parents=True)
    for name in ("actions.csv", "power.csv", "collectl.csv"):
        (broken / name).write_text((exported / "oscar" / "cnn" / name).read_text())
    lines = (broken / "power.csv").read_text().splitlines()
    lines[5] = "27.11.2026 09:00:24;hundert"
    (broken / "power.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MltelemetryError, match=r"power\.csv:6: expected 'DD\.MM\.YYYY HH:MM:SS;watts'"):
        import_oscar(tmp_path / "broken", tmp_path / "x.db", "c")
    (broken / "actions.csv").write_text("Zeitstempel;Aktion\n27.11.2026 09:00:30,000;prepare_data\n")
    result = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "x.db"),
                                      "--import-oscar", str(tmp_path / "broken")])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: {broken / 'actions.csv'}:2: 'prepare_data' outside a test run "
                                     "(startTestrun … stopTestrun)")
    with pytest.raises(MltelemetryError, match="holds no OSCAR input"):
        import_oscar(tmp_path, tmp_path / "x.db", "c")


def test_blank_power_cells_are_a_gap_not_a_flat_counter(tmp_path):
    folder = tmp_path / "oscar" / "x"
    folder.mkdir(parents=True)
    (folder / "actions.csv").write_text(f"Zeitstempel;Aktion\n{stamp(10)};startTestrun\n{stamp(110)};stopTestrun\n")
    lines = ["Zeitstempel;Wirkleistung [W]"] + [f"{stamp(s, False)};{'' if 30 <= s < 60 else '100,00'}"
                                                for s in range(120)]
    (folder / "power.csv").write_text("\n".join(lines) + "\n")
    (folder / "collectl.csv").write_text("#Date Time [CPU]Totl%\n")
    import_oscar(tmp_path / "oscar", tmp_path / "s.db", "c")
    with Store(tmp_path / "s.db") as store:
        row = analyze_campaign(store, "c").windows.iloc[0]
    # 30 blank seconds of the 100: the counter stayed flat through them with coverage 1.0 and no flag
    assert row.coverage == pytest.approx(72 / 100)  # edges 10..30 and 60..110 s: 21 + 51
    assert row.meter_gap_s == pytest.approx(30.0)
    assert row.flagged and "no valid reading for 30.0 s" in row.note
    assert row.energy_wh == pytest.approx(70 * 100 / 3600)  # what was measured, marked under-counted


def test_export_leaves_the_seconds_of_a_meter_gap_empty(tmp_path):
    # 100 W; the meter's counter has no samples from 21 s to 38 s (20 … 39 s: a 19 s gap), the run is 10 … 50 s
    samples = [Sample(schema.PM_ENERGY, {"host": "h", "meter": "m"}, 100.0 * t, ORIGIN_NS + t * S)
               for t in range(61) if not 20 < t < 39]
    with Store(tmp_path / "s.db") as store:
        store.write(samples)
        store.write_events([Event("c", "x", 1, "run", ORIGIN_NS + 10 * S, ORIGIN_NS + 50 * S)])
        export_oscar(store, "c", tmp_path / "oscar")
    power = dict(line.split(";") for line in (tmp_path / "oscar" / "x" / "power.csv").read_text().splitlines()[1:])
    assert power[stamp(19, False)] == "100,00" and power[stamp(39, False)] == "100,00"
    # the 19 s were spread evenly at 100 W each before; how the energy fell inside the gap is unknown
    assert all(power[stamp(t, False)] == "" for t in range(20, 39))
