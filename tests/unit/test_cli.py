"""The command line as a user meets it: choices, exit codes, one-line errors, environment variables,
completion, `store info` / `campaign list`, and the analysis printed for people."""

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mltelemetry import schema
from mltelemetry.analysis import analyze
from mltelemetry.analysis.cli import render_table
from mltelemetry.cli import app
from mltelemetry.schema import Event, Sample
from mltelemetry.store import Store

S = 10**9
T0 = 1_700_000_000 * S  # 2023-11-14 22:13:20 UTC


def power_at(t: int) -> float:
    """The SUT: 100 W idle, 150 W while the cpu runs (t in [20, 30) and [40, 50)), 175 W in the cnn runs."""
    return 150.0 if 20 <= t < 30 or 40 <= t < 50 else 175.0 if 60 <= t < 70 or 80 <= t < 90 else 100.0


def campaign_store(path, gpu: bool = False) -> None:
    """1 Hz meter energy counter for 0..100 s and a campaign of two 10 s runs each of baseline, cpu and cnn; with
    ``gpu`` also a GPU's energy counter (half the wall power), its load and the cnn runs' validation accuracy."""
    energy, samples = 0.0, []
    gpu_labels = {"host": "sut", "gpu": "0", "uuid": "GPU-0", "name": "NVIDIA H200", "method": "nvml_counter"}
    for t in range(101):
        samples.append(Sample(schema.PM_ENERGY, {"host": "sut", "meter": "m"}, energy, T0 + t * S))
        samples.append(Sample(schema.HOST_CPU_UTILIZATION, {"host": "sut", "cpu": "total"}, 0.5, T0 + t * S))
        if gpu:
            samples.append(Sample(schema.GPU_ENERGY, gpu_labels, energy / 2, T0 + t * S))
            samples.append(Sample(schema.GPU_UTILIZATION, gpu_labels, 0.9, T0 + t * S))
        energy += power_at(t)
    events = []
    for scenario, starts in (("baseline", (0, 10)), ("cpu", (20, 40)), ("cnn", (60, 80))):
        for run, start in enumerate(starts, 1):
            fields = {"val_accuracy": 0.8} if gpu and scenario == "cnn" else {}
            events.append(Event("c", scenario, run, "run", T0 + start * S, T0 + (start + 10) * S, fields=fields))
            events.append(Event("c", scenario, run, "cleanup", T0 + (start + 9) * S, T0 + start * S + int(9.4 * S)))
    with Store(path) as store:
        store.write(samples)
        store.write_events(events)


@pytest.fixture
def store_path(tmp_path):
    campaign_store(tmp_path / "lab.db")
    return tmp_path / "lab.db"


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# --- choices and exit codes ---------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--log-level", "foo", "store", "info", "x.db"], "'foo' is not one of 'debug', 'info', 'warning', 'error'"),
    (["analyze", "--campaign", "c", "--format", "xml"], "'xml' is not one of 'table', 'json', 'csv'"),
    (["exporter", "pm", "--port", "/dev/null", "--driver", "wt9000"], "'wt9000' is not one of 'wt300'"),
    (["exporter", "host", "--influx-url", "http://127.0.0.1:1", "--influx-api", "v3"], "'v3' is not one of 'v2'"),
    (["campaign", "run", "--campaign", "c", "--store", "s.db", "--order", "sideways"], "'sideways' is not one of"),
    (["campaign", "run", "--campaign", "c", "--store", "s.db", "--backend", "jax"], "'jax' is not one of"),
    (["campaign", "run", "--campaign", "c", "--store", "s.db", "--scenario", "nope"], "unknown scenario 'nope'"),
    (["analyze", "--compare", "a", "--source", "x.db"], "got '--source' as one of them"),
    (["analyze", "--source", "x.db"], "say which campaign"),
    (["exporter", "host", "--listen", "nowhere"], "--listen wants HOST:PORT"),
    (["analyze", "--campaign", "c", "--source", "ftp://x"], "unknown scheme 'ftp'"),
    (["analyze", "--campaign", "c", "--bogus"], "No such option: --bogus"),
])
def test_a_usage_error_is_one_line_and_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)
    assert not (tmp_path / "s.db").exists()


def test_log_level_takes_any_case():
    assert CliRunner().invoke(app, ["--log-level", "WARNING", "--version"]).exit_code == 0


# --- environment variables and completion ---------------------------------------------------------------
def test_every_option_reads_an_mltelemetry_variable(store_path):
    env = {"MLTELEMETRY_ANALYZE_SOURCE": str(store_path), "MLTELEMETRY_ANALYZE_CAMPAIGN": "c",
           "MLTELEMETRY_ANALYZE_FORMAT": "json"}
    result = CliRunner().invoke(app, ["analyze"], env=env)
    assert result.exit_code == 0, result.output
    # 2 baseline runs at 100 W for 10 s: 1000 J each, so 100 W of baseline power
    assert json.loads(result.stdout)["baseline_power_w"] == pytest.approx(100.0)
    result = CliRunner().invoke(app, ["analyze"], env={**env, "MLTELEMETRY_ANALYZE_FORMAT": "yaml"})
    assert result.exit_code == 2
    assert "'yaml' is not one of" in one_error_line(result) and "(from $MLTELEMETRY_ANALYZE_FORMAT)" in result.stderr
    result = CliRunner().invoke(app, ["campaign", "list", "--json"], env={"MLTELEMETRY_CAMPAIGN_LIST_SOURCE":
                                                                          str(store_path)})
    assert result.exit_code == 0 and [c["campaign"] for c in json.loads(result.stdout)] == ["c"]
    # a variable that says which version is installed (Dockerfiles set such) is not the --version flag
    result = CliRunner().invoke(app, ["analyze"], env={**env, "MLTELEMETRY_VERSION": "0.1.0"})
    assert result.exit_code == 0 and json.loads(result.stdout)["campaign"] == "c"


# --- what a store holds ------------------------------------------------------------------------------------
def test_store_info_tells_size_series_span_and_campaigns(store_path):
    result = CliRunner().invoke(app, ["store", "info", str(store_path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    # two series (meter energy, CPU ratio) of 101 samples each, t = 0..100 s after T0
    assert (info["series"], info["samples"], info["span_s"]) == (2, 202, 100.0)
    assert (info["first"], info["last"]) == ("2023-11-14 22:13:20", "2023-11-14 22:15:00")
    assert info["bytes"] == store_path.stat().st_size > 0
    assert [(m["metric"], m["series"], m["samples"]) for m in info["metrics"]] == [
        (schema.HOST_CPU_UTILIZATION, 1, 101), (schema.PM_ENERGY, 1, 101)]
    [campaign] = info["campaigns"]
    # three scenarios of two runs each, every run with a cleanup: 12 events from t = 0 to t = 90 s
    assert campaign == {"campaign": "c", "scenarios": ["baseline", "cpu", "cnn"], "runs_ok": 6, "runs_not_ok": 0,
                        "events": 12, "start": "2023-11-14 22:13:20", "end": "2023-11-14 22:14:50", "span_s": 90.0}
    text = CliRunner().invoke(app, ["store", "info", str(store_path)]).stdout
    assert "2 series of 2 metrics, 202 samples from 2023-11-14 22:13:20 to 2023-11-14 22:15:00 UTC" in text
    assert any(line.split()[:5] == ["c", "baseline,", "cpu,", "cnn", "6"] for line in text.splitlines()), text


def test_campaign_list_of_an_empty_store(tmp_path):
    Store(tmp_path / "empty.db").close()
    result = CliRunner().invoke(app, ["campaign", "list", "--source", str(tmp_path / "empty.db")])
    assert result.exit_code == 0 and result.stdout.strip() == f"no campaigns in {tmp_path / 'empty.db'}"


# --- the analysis for people ---------------------------------------------------------------------------------
def test_summary_first_within_100_columns_as_plain_text_when_piped(store_path):
    result = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(store_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "campaign c: baseline power 100.00 W"
    assert lines[1].startswith("per scenario")
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert not any(c in result.stdout for c in "│┃╭"), "no rich box when stdout is not a terminal"
    rows = {line.split()[0]: line for line in lines[5:8]}  # title, rule, heading, rule, then the rows
    assert list(rows) == ["baseline", "cpu", "cnn"]
    # cpu: 150 W for 10 s = 1500 J = 0.4167 Wh, induced (150 − 100) W × 10 s = 500 J = 0.1389 Wh, in both runs
    assert rows["cpu"].split() == ["cpu", "2", "10.0", "0.4167", "±", "0.0000", "150.0", "0.1389", "±", "0.0000",
                                   "0.50"]
    # cnn: 175 W: 1750 J = 0.4861 Wh, induced 750 J = 0.2083 Wh
    assert rows["cnn"].split()[3] == "0.4861" and rows["cnn"].split()[7] == "0.2083"
    assert "cleanup" not in result.stdout  # the sub-second actions are detail
    assert "every action, run and epoch: --detail" in result.stdout

    detail = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(store_path), "--detail"])
    assert detail.exit_code == 0 and detail.stdout.startswith(result.stdout.split("\nnote")[0].split("\nevery")[0])
    cleanups = [line for line in detail.stdout.splitlines() if " cleanup " in f" {line} "]
    assert len(cleanups) == 3 + 6  # one summary row per scenario, then the 6 windows


def test_summary_on_a_terminal_is_boxed_and_fits_100_columns(store_path):
    result = analyze(store_path, "c")
    console = Console(force_terminal=True, width=100, record=True, color_system=None)
    render_table(result, console)
    text = console.export_text()
    assert "┃ scenario" in text or "│ scenario" in text or "scenario" in text.splitlines()[3]
    assert all(len(line) <= 100 for line in text.splitlines())
    summary = text.split("b against a")[0]
    cpu = [line for line in summary.splitlines() if line.lstrip(" │").startswith("cpu ")]
    assert len(cpu) == 1 and "0.4167 ± 0.0000" in cpu[0]  # one row, not wrapped into several


def test_every_summary_column_together_still_fits_100_columns(tmp_path):
    campaign_store(tmp_path / "gpu.db", gpu=True)
    result = CliRunner().invoke(app, ["analyze", "--campaign", "c", "--source", str(tmp_path / "gpu.db")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[3].split() == ["scenario", "n", "time", "s", "energy", "Wh", "±", "sd", "power", "W", "induced", "Wh",
                                "±", "CI", "CPU", "GPU", "Wh", "GPU", "val", "acc"]
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    cnn = next(line for line in lines if line.startswith("cnn "))
    # GPU: half of 175 W for 10 s = 875 J = 0.2431 Wh; load 0.90; accuracy 0.80
    assert cnn.split()[-3:] == ["0.2431", "0.90", "0.80"]
    assert "meter against on-board sensors" in result.stdout  # the meter-against-GPU comparison is shown


def test_windows_of_your_own_without_run_windows_are_summarised_per_action(tmp_path):
    """An Annotator script that records train and epochs but no run: the summary per action stands in."""
    with Store(tmp_path / "own.db") as store:
        store.write([Sample(schema.PM_ENERGY, {"host": "sut", "meter": "m"}, 200.0 * t, T0 + t * S) for t in range(31)])
        store.write_events([Event("mine", "resnet", 1, "train", T0 + 2 * S, T0 + 22 * S),
                            *(Event("mine", "resnet", 1, "epoch", T0 + (2 + 5 * k) * S, T0 + (7 + 5 * k) * S,
                                    epoch=k + 1) for k in range(4))])
    result = CliRunner().invoke(app, ["analyze", "--campaign", "mine", "--source", str(tmp_path / "own.db")])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line.split() for line in result.stdout.splitlines() if line.startswith("resnet ")}
    # 200 W: the 20-s train window 4000 J = 1.111 Wh, each 5-s epoch 1000 J = 0.2778 Wh (4 of them)
    assert rows["train"][2:4] == ["1", "20.0"] and rows["train"][4] == "1.111"
    assert rows["epoch"][2:6] == ["4", "5.0", "±", "0.0"] and rows["epoch"][6:9] == ["0.2778", "±", "0.0000"]
