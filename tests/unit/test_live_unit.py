"""Events live, in memory: a failing publisher does not stop the workload, tokens are never command-line options
(the events in real Prometheus and InfluxDB: tests/integration/test_live.py)."""

from __future__ import annotations

from typer.testing import CliRunner

from mltelemetry.cli import app
from mltelemetry.publisher import Capability, Publisher
from mltelemetry.store import Store
from mltelemetry.workload.events import EventRecorder


def test_a_failing_publisher_does_not_stop_the_workload(tmp_path):
    class Broken(Publisher):
        capabilities = frozenset({Capability.EVENTS})

        def publish_events(self, change):
            raise RuntimeError("boom")

    with Store(tmp_path / "s.db") as store:
        recorder = EventRecorder(store, "c", publishers=[Broken()])
        with recorder.window("run", scenario="s", run=1):
            pass
        assert [e.action for e in store.events("c")] == ["run"]


def test_tokens_are_never_command_line_options():
    runner = CliRunner()
    for command in (["exporter", "host"], ["campaign", "run"]):
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert "--influx-token-file" in result.output and "--influx-url" in result.output
        assert "--influx-token " not in result.output and "--grafana-token" not in result.output
        rejected = runner.invoke(app, [*command, "--influx-token", "secret"])
        assert rejected.exit_code == 2 and "No such option" in rejected.output
