import requests

from mltelemetry import schema
from mltelemetry.schema import Sample
from mltelemetry.sinks import PrometheusSink

GOLDEN = """\
# HELP mltelemetry_pm_energy_joules_total Energy integrated by the exporter from the meter's power readings.
# TYPE mltelemetry_pm_energy_joules_total counter
mltelemetry_pm_energy_joules_total{host="sut",meter="wt310"} 1234.5
# HELP mltelemetry_pm_meter_info Identity of the power meter (model, serial, firmware, driver).
# TYPE mltelemetry_pm_meter_info gauge
mltelemetry_pm_meter_info{driver="wt300",firmware="F1.03",host="sut",meter="wt310",model="WT310",serial="C2PH"} 1.0
# HELP mltelemetry_pm_power_watts Active power measured by the power meter, averaged over its update interval.
# TYPE mltelemetry_pm_power_watts gauge
mltelemetry_pm_power_watts{host="sut",meter="wt310"} 87.5
mltelemetry_pm_power_watts{host="sut",meter="wt\\\\31\\"0\\n"} 1.0
"""


def test_exposition_matches_the_golden_text():
    sink = PrometheusSink("127.0.0.1", 0)
    try:
        labels = {"host": "sut", "meter": "wt310"}
        sink.publish([Sample(schema.PM_POWER, labels, 80.0, 1), Sample(schema.PM_ENERGY, labels, 1000.0, 1)])
        sink.publish([Sample(schema.PM_POWER, labels, 87.5, 2), Sample(schema.PM_ENERGY, labels, 1234.5, 2),
                      Sample(schema.PM_INFO, {**labels, "driver": "wt300", "model": "WT310", "serial": "C2PH",
                                              "firmware": "F1.03"}, 1, 2),
                      Sample(schema.PM_POWER, {"host": "sut", "meter": 'wt\\31"0\n'}, 1.0, 2)])  # hostile label
        body = requests.get(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).text
    finally:
        sink.close()
    assert body == GOLDEN
