#!/bin/bash
# Issue 10 again with the emulated meter running (the first session's emulator was given an invalid profile):
# interleaved baseline/cnn/transfer × 3 with --settle, then --vary batch_size × precision, the GPU exporter at
# 0.1 s and the PM exporter on an emulated WT310 following the machine's CPU. Device tool, repository root,
# .whl/ with pyserial and mltelemetry's wheel. Results: bench/h200.md.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/h200-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site
cd /tmp
M="python3 -m mltelemetry"
S=/tmp/h200.db
$M pm emulate --driver wt300 --link /tmp/wt310 --profile cpu:55,85 > /tmp/emulator.log 2>&1 &
for i in $(seq 50); do [ -e /tmp/wt310 ] && break; sleep 0.2; done
$M exporter pm --driver wt300 --port /tmp/wt310 --meter wt310 --store $S --listen off --interval 1 > /tmp/pm.log 2>&1 &
$M exporter gpu --store $S --listen off --interval 0.1 > /tmp/gpu.log 2>&1 &
sleep 4
COMMON="--store $S --backend torch --device cuda --workdir /tmp --export-dir /tmp/exports --no-progress --pause 2"
timeout 130 $M campaign run --campaign interleaved $COMMON --scenario baseline --scenario cnn --scenario transfer \
  --runs 3 --order interleaved --seconds 8 --settle --synthetic-images 60 --max-epochs 2
timeout 70 $M campaign run --campaign vary $COMMON --scenario baseline --scenario cnn --runs 1 --seconds 6 \
  --vary batch_size=32,128 --vary precision=fp32,bf16 --synthetic-images 60 --max-epochs 3
kill %2 %3; sleep 3; kill %1
tail -n 2 /tmp/pm.log /tmp/gpu.log /tmp/emulator.log
cp $S $OUT/h200_meter.db
