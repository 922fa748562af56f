#!/bin/bash
# Issue 11 on the device machine (repository root; pyserial and mltelemetry's own wheel carried in .whl/): GPU
# exporter CPU-s/h and RSS at 1 s and 0.1 s (and 0.1 s with the counter read once a second), scraped every
# second, with window energy (>= 5 s, bursty) against the counter read directly.
# Results: $OUT/overhead_gpu.json and $OUT/log_overhead.txt.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-bench-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log_overhead.txt") 2>&1
nvidia-smi --query-gpu=index,name,driver_version --format=csv
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site
REPO=$(pwd)
cd /tmp  # the repository's own mltelemetry/ folder must not shadow the installed package
python3 $REPO/bench/gpu/overhead_gpu.py --out "$OUT" --scale "${SCALE:-1.0}"
