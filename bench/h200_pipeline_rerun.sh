#!/bin/bash
# The cnn pipeline against its ceiling again, after moving the optimizer's construction to create_model
# (device tool, repository root, .whl/ with pyserial and mltelemetry's wheel). Results: bench/h200.md.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/h200-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site
REPO=$(pwd)
cd /tmp
for epochs in 4 12; do
  timeout 120 python3 $REPO/bench/gpu_pipeline.py --device cuda --scenario cnn --synthetic-images 600 \
    --max-epochs $epochs --out $OUT/gpu_pipeline_${epochs}.json | tail -3
done
