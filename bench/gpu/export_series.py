"""Write the GPU series of the bench stores (*.db, not committed) as one gzipped CSV per store.

    python3 bench/gpu/export_series.py DIR → DIR/<store>.csv.gz (ts_ns, metric, gpu, label, value)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from mltelemetry import schema
from mltelemetry.store import Store

METRICS = (schema.GPU_POWER, schema.GPU_ENERGY, schema.GPU_UTILIZATION, schema.GPU_TEMPERATURE, schema.GPU_CLOCK,
           schema.GPU_THROTTLE, schema.EXPORTER_SAMPLE_DURATION)


def main() -> None:
    for path in sorted(Path(sys.argv[1]).glob("*.db")):
        frames = []
        with Store(path) as store:
            for metric in METRICS:
                frame = store.query(metric)
                if frame.empty:
                    continue
                extra = next((k for k in ("kind", "method", "clock", "exporter") if k in frame), None)
                frames.append(pd.DataFrame({
                    "ts_ns": frame["ts_ns"], "metric": metric.removeprefix(schema.PREFIX),
                    "gpu": frame.get("gpu", ""), "label": frame[extra] if extra else "", "value": frame["value"]}))
        pd.concat(frames).sort_values(["metric", "gpu", "label", "ts_ns"]).to_csv(
            path.with_suffix(".csv.gz"), index=False)
        print(path.with_suffix(".csv.gz"))


if __name__ == "__main__":
    main()
