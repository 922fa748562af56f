"""The HTML report: written by ``analyze --report``, opened in headless Chromium, every image loaded, a screenshot."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

import numpy as np
import pandas as pd
import pytest
from test_analysis import crafted_store, variant_name, variant_store
from test_analysis_figures import lab_store
from typer.testing import CliRunner

from conftest import require_binary
from mltelemetry.cli import app

FIGURE_NAMES = {"power_over_time", "energy_overview", "hardware_usage", "epoch_energy_vs_temperature",
                "efficiency_factor", "meter_vs_trackers"}


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def chromium(tmp_path, *args: str) -> str:
    binary = require_binary("chromium")
    done = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def loaded_images(tmp_path, index) -> tuple[list[dict], str]:
    """The page's <img> tags as Chromium saw them after loading (the report's own script marks them)."""
    dom = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=10000", index.as_uri())
    images = [dict(re.findall(r'([\w-]+)="([^"]*)"', tag)) for tag in re.findall(r"<img\b[^>]*>", dom)]
    return images, dom


@pytest.fixture(scope="module")
def lab_report(tmp_path_factory):
    """The lab campaign's report, written once through the CLI: (folder, CLI output)."""
    tmp = tmp_path_factory.mktemp("lab-report")
    lab_store(tmp / "lab.db").close()
    out = tmp / "report"
    result = CliRunner().invoke(app, ["analyze", "--campaign", "lab", "--source", str(tmp / "lab.db"),
                                      "--report", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_report_opens_in_chromium_with_every_figure(tmp_path, lab_report):
    out, output = lab_report
    assert f"report written to {out / 'index.html'}" in output
    pngs = {p.stem: p for p in (out / "figures").glob("*.png")}
    assert set(pngs) == FIGURE_NAMES

    images, dom = loaded_images(tmp_path, out / "index.html")
    assert len(images) == 6 and 'data-images-failed="0"' in dom
    for image in images:
        png = out / image["src"]
        assert image["data-loaded"] == "yes", image
        assert int(image["data-natural-width"]) == png_size(png)[0]  # decoded, at its real size
    assert "No figure" not in dom

    screenshot = tmp_path / "report-screenshot.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,3000", "--virtual-time-budget=10000",
             (out / "index.html").as_uri())
    assert png_size(screenshot) == (1280, 3000)
    from matplotlib.image import imread

    pixels = imread(screenshot)[..., :3]
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 0.2  # bars and lines, not text or background
    assert coloured.mean() > 0.01

    # the data behind the figures: the hand-computed energy of cnn run 1 (7150 J)
    windows = pd.read_csv(out / "data" / "windows.csv")
    run = windows[(windows.scenario == "cnn") & (windows.run == 1) & (windows.action == "run")].iloc[0]
    assert run.energy_wh == pytest.approx(7150 / 3600)
    traces = pd.read_csv(out / "data" / "power_traces.csv")
    assert len(traces[(traces.scenario == "cnn") & (traces.run == 1)]) == 40
    summary = pd.read_csv(out / "data" / "summary_long.csv").set_index(["scenario", "action", "figure"])
    assert summary.loc[("cnn", "run", "energy_wh"), "std"] == pytest.approx(300 / 3600)
    assert {"windows.csv", "tests.csv", "correlations.csv", "meter_vs_sensors.csv", "analysis.json"} <= {
        p.name for p in (out / "data").iterdir()}


def test_a_report_copied_without_its_figures_says_so(tmp_path, lab_report):
    """The image check can fail: a copy of the report without figures/ is caught."""
    copy = tmp_path / "copy"
    shutil.copytree(lab_report[0], copy, ignore=shutil.ignore_patterns("figures"))
    images, dom = loaded_images(tmp_path, copy / "index.html")
    assert [i["data-loaded"] for i in images] == ["no"] * 6 and 'data-images-failed="6"' in dom


def test_figures_without_their_data_give_a_reason(tmp_path):
    crafted_store(tmp_path / "s.db")  # meter and CPU only: no GPU, no epochs, no accuracy, no trackers
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "s.db"),
                                      "--report", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.stem for p in (out / "figures").glob("*.png")} == {"power_over_time", "energy_overview",
                                                                  "hardware_usage"}
    page = (out / "index.html").read_text()
    assert "No figure: no epoch with a wall energy figure (the campaign recorded no epoch events)." in page
    assert "No figure: no run recorded a validation accuracy or correct classifications" in page
    assert "No figure: no run recorded on-board sensor energy (GPU counter, RAPL) or a CodeCarbon estimate." in page
    images, dom = loaded_images(tmp_path, out / "index.html")
    assert len(images) == 3 and all(i["data-loaded"] == "yes" for i in images)
    assert np.isfinite(pd.read_csv(out / "data" / "power_traces.csv").power_w).all()


def test_comparison_report(tmp_path):
    lab_store(tmp_path / "lab.db").close()
    out = tmp_path / "compare"
    result = CliRunner().invoke(app, ["analyze", "--compare", "lab", "lab", "--source", str(tmp_path / "lab.db"),
                                      "--report", str(out), "--format", "csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "data" / "comparison.csv")
    assert set(table.scenario_a) == {"baseline", "cnn"}
    images, _ = loaded_images(tmp_path, out / "index.html")
    assert [i["src"] for i in images] == ["figures/comparison.png"] and images[0]["data-loaded"] == "yes"
    assert (out / "a-lab" / "index.html").exists() and (out / "b-lab" / "figures" / "power_over_time.png").exists()


def test_report_compares_variants_with_the_pareto_front(tmp_path):
    variant_store(tmp_path / "v.db").close()
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["analyze", "--campaign", "v", "--source", str(tmp_path / "v.db"),
                                      "--report", str(out)])
    assert result.exit_code == 0, result.output
    assert "variants: wall energy and time to the target accuracy" in result.output  # the CLI's table
    # the label printed as it is (not eaten as rich markup), starred on the front, 3 runs, 3 reached
    label = re.escape(f"cnn [{variant_name('V1')}]")
    assert re.search(rf"^\*\s+{label}\s+3\s+3\s", result.output, re.M), result.output
    images, dom = loaded_images(tmp_path, out / "index.html")
    pareto = next(i for i in images if i["src"] == "figures/variants_pareto.png")
    assert pareto["data-loaded"] == "yes" and int(pareto["data-natural-width"]) == png_size(
        out / "figures" / "variants_pareto.png")[0]
    table = re.search(r'<table id="variants">.*?</table>', dom).group(0)
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)]
    by_variant = {row[1]: row for row in rows if row}
    assert set(by_variant) == {variant_name(k) for k in ("V1", "V2", "V3")}  # the baseline does no work: not shown
    assert [by_variant[variant_name(k)][-1] for k in ("V1", "V2", "V3")] == ["yes", "yes", ""]  # the pareto column
    assert by_variant[variant_name("V1")][2:4] == ["3", "3"] and by_variant[variant_name("V3")][2:4] == ["4", "3"]
    assert 'id="variant-tests"' in dom
    assert pd.read_csv(out / "data" / "variants.csv").pareto.tolist() == [False, True, True, False]  # baseline first

    screenshot = tmp_path / "variants-screenshot.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,1600", "--virtual-time-budget=10000",
             (out / "index.html").as_uri())  # the variant comparison comes first, after the notes
    from matplotlib.image import imread

    pixels = imread(screenshot)[..., :3]
    red = (pixels[..., 0] > 0.7) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)  # the front (tab:red)
    assert red.sum() > 200, "the Pareto front is not in view"
    shutil.copy(screenshot, out / "variants-screenshot.png")  # kept with the report for a look
