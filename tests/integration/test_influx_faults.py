"""The InfluxDB sink under hostile settings and a full spool disk (a real, small tmpfs filled up)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import fill, free_port, wait_for
from mltelemetry import schema
from mltelemetry.influx import InfluxSink, V1Writer
from mltelemetry.schema import Sample
from mltelemetry.spool import Spool


def test_the_exporter_refuses_credentials_in_the_influx_url_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mltelemetry", "exporter", "host", "--listen", "off",
                             "--influx-url", "http://admin:s3cret@127.0.0.1:8086", "--influx-api", "v1",
                             "--spool-dir", str(tmp_path / "spool")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --influx-url must not hold credentials") and "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_lines_waiting_for_a_full_spool_disk_are_bounded_counted_and_reported(small_fs, caplog):
    # main: with the spool's disk full the lines waited in memory without limit and spool_fill_ratio stayed 0
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the server is away
    sink = InfluxSink(V1Writer(down, "db", timeout_s=1), Spool(small_fs / "spool", fsync=False),
                      flush_interval_s=0.05, max_backoff_s=0.05, max_pending_lines=1000)
    filler = fill(small_fs)
    try:
        for k in range(30):  # 30 ticks of 100 samples: 3000 lines, at most 1000 may wait
            sink.publish_samples([Sample(schema.PM_POWER, {"host": "h", "meter": str(m)}, 1.0, k * 100 + m)
                          for m in range(100)])
            wait_for(lambda: not sink._pending or sink.errors_total > 0, 10, "the sink to try the full spool")
        wait_for(lambda: sink.dropped_pending_lines >= 2000, 10, "the oldest lines to be dropped")
        assert len(sink._pending) == 1000 and sink.dropped_pending_lines == 2000 and sink.spool.empty
        health = {s.metric: s.value for s in sink.health({"host": "h", "exporter": "pm"}, 0)}
        assert health[schema.EXPORTER_SPOOL_FILL] == 1.0  # 1000 of 1000 lines in memory
        assert health[schema.EXPORTER_SPOOL_DROPPED] == 2000.0
        assert caplog.text.count("cannot spool in") == 1  # rate-limited, and names the folder
        assert str(small_fs / "spool") in caplog.text and "Traceback" not in caplog.text
    finally:
        os.remove(filler)
        sink.close_timeout_s = 0
        sink.close()
