"""Issue 18: the shipped Prometheus scrape configuration honours the exporters' reading times (the pull path end to
end: tests/integration/test_exact_energy_pull.py)."""

from __future__ import annotations

from pathlib import Path


def test_the_shipped_scrape_configuration_honours_the_reading_times():
    import yaml

    config = yaml.safe_load((Path(__file__).parents[2] / "deploy/prometheus/prometheus.yml").read_text())
    assert [job.get("honor_timestamps") for job in config["scrape_configs"]] == [True, True]
