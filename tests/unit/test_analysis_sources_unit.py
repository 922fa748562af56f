"""Sources in memory: a repeated timestamp keeps its last value, and the sensor exporters' option (the real
Prometheus, VictoriaMetrics and InfluxDB reads: tests/integration/test_analysis_sources.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.errors import MltelemetryError


def test_a_repeated_timestamp_keeps_its_last_value_as_the_store_does():
    from mltelemetry.analysis.sources import _frame

    parts = {(("host", "h"),): [(np.array([0, 1]), np.array([1.0, 2.0])), (np.array([1, 2]), np.array([5.0, 6.0]))]}
    frame = _frame(parts, None, None)
    assert frame.ts_ns.tolist() == [0, 1, 2] and frame.value.tolist() == [1.0, 5.0, 6.0]  # was 2.0 at ts 1


def test_sensor_exporters_takes_three_values(tmp_path):
    from typer.testing import CliRunner

    from mltelemetry.cli import app

    result = CliRunner().invoke(app, ["analyze", "--campaign", "lab", "--source", str(tmp_path / "none.db"),
                                      "--sensor-exporters", "both"])
    assert result.exit_code == 2 and "--sensor-exporters takes auto, mltelemetry, standard" in result.output
    with pytest.raises(MltelemetryError, match="sensor exporters 'both'"):
        analyze_campaign(tmp_path / "none.db", "lab", sensor_exporters="both")

