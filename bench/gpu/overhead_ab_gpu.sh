#!/bin/bash
# Issue 11 on the device machine: the GPU exporter of this tree beside the same exporter of a base version, around
# the same bursty load, REPEAT times (default 3), at --interval 0.1 with its default counter interval (RUN: a
# name of bench/gpu/overhead_gpu.py's RUNS); then what its resident memory is made of (bench/rss_parts.py,
# nvmlInit included).
# Carry .whl/ with this tree's wheel, pyserial and typer at the top and the base version's wheel in .whl/base/:
#   rm -f .whl/mltelemetry-*.whl && pip wheel -q --no-deps --no-build-isolation -w .whl .
#   git worktree add /tmp/base BASE && (cd /tmp/base && pip wheel -q --no-deps --no-build-isolation -w $PWD/.whl/base .)
# PLAIN=1: the exporters are run by a plain venv's python made here (this machine's site-packages on its import path,
# without their .pth start-up hooks, which import ≈ 100 modules into every Python started here).
# Results: $OUT/overhead_gpu.json, $OUT/log_overhead_ab.txt.
set -u
source bench/device_lib.sh
device_setup /tmp/gpu-ab-out log_overhead_ab.txt
python3 -m pip install -q --no-index --no-deps --target /tmp/base "$REPO"/.whl/base/*.whl || exit 3
nvidia-smi --query-gpu=index,name,driver_version --format=csv
PYTHON=python3
if [ -n "${PLAIN:-}" ]; then
  "$(python3 -c 'import sys; print(sys._base_executable)')" -m venv --without-pip /tmp/plain || exit 3
  PYTHON=/tmp/plain/bin/python3
fi
step "rss parts"
python3 "$REPO/bench/rss_parts.py" --exporter gpu --python "$(command -v $PYTHON)"
step "A/B at 0.1 s"
python3 "$REPO/bench/gpu/overhead_gpu.py" --out "$OUT" --only "${RUN:-0.1 s, counter every 2 s (the default)}" \
    --base-site /tmp/base --repeat "${REPEAT:-3}" --python "$(command -v $PYTHON)"
rm -f "$OUT"/*.db
