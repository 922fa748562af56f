#!/bin/bash
# Second device call: exporter CPU alone (bench/gpu/cpu_alone.py), one process at a time, GPU idle.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-bench-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log_cpu.txt") 2>&1
nvidia-smi --query-gpu=index,name,driver_version --format=csv
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/tmp/pip.log 2>&1 || { tail -3 /tmp/pip.log; exit 3; }
python3 bench/gpu/cpu_alone.py --out "$OUT" --seconds 60
