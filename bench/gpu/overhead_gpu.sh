#!/bin/bash
# Issue 11 on the device machine (repository root; pyserial and mltelemetry's own wheel carried in .whl/): GPU
# exporter CPU-s/h and RSS at 1 s and 0.1 s (and 0.1 s with the counter read every 0.5 s, every 1 s), scraped every
# second, with window energy (>= 5 s, bursty) against the counter read directly.
# Results: $OUT/overhead_gpu.json and $OUT/log_overhead.txt.
set -u
source bench/device_lib.sh
device_setup /tmp/gpu-bench-out log_overhead.txt
nvidia-smi --query-gpu=index,name,driver_version --format=csv
python3 $REPO/bench/gpu/overhead_gpu.py --out "$OUT" --scale "${SCALE:-1.0}" ${SEQUENTIAL:+--sequential} ${CODECARBON:+--codecarbon $CODECARBON}
