#!/bin/bash
# Second H200 call of 2026-12-01 (repository root; .whl/ carried): issue 11's GPU exporter overhead
# (bench/gpu/overhead_gpu.sh) and issue 10's cnn against its ceiling over longer train windows.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/h200-2}
mkdir -p "$OUT"
bash bench/gpu/overhead_gpu.sh
REPO=$(pwd)
export PYTHONPATH=/tmp/site
cd /tmp
timeout 200 python3 $REPO/bench/gpu_pipeline.py --device cuda --scenario cnn --synthetic-images 1200 --max-epochs 12 \
  --label hold-12 --out $OUT/gpu_pipeline.json 2>&1 | tee $OUT/log_pipeline.txt | tail -25
