"""The systemd units give the /metrics server its descriptor limit (the server itself: tests/integration/
test_exposition.py)."""

from __future__ import annotations

import re
from pathlib import Path

from mltelemetry.httpserver import ServerLimits


def test_the_systemd_units_set_a_descriptor_limit():
    units = sorted((Path(__file__).parents[2] / "deploy" / "systemd").glob("mltelemetry-exporter-*.service"))
    assert len(units) == 3
    for unit in units:
        (limit,) = re.findall(r"^LimitNOFILE=(\d+)$", unit.read_text(), re.M)
        assert int(limit) >= ServerLimits().max_connections + 32, unit.name
