#!/bin/bash
# One session on the H200 machine (device tool; repository root; pyserial carried as a wheel in .whl/):
#   issue 10: the cnn pipeline against its ceiling; an interleaved baseline/cnn/transfer campaign with --settle
#             (baselines against the first one, GPU and meter); a --vary batch_size × precision campaign
#   issue 14: lm-train and lm-infer with the GPU exporter (energy per token)
#   issue 19: `mltelemetry demo` on the GPU
# The exporters (emulated WT310 following the machine's CPU, host, GPU at 0.1 s) run through the campaigns and
# write one store, which comes back with the analyses. Results: bench/h200.md.
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
OUT=${OUT:-/tmp/h200-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
START=$(date +%s)
left() { echo $(( ${BUDGET:-540} - ($(date +%s) - START) )); }
step() { echo; echo "=== $1 (t=$(( $(date +%s) - START )) s)"; }

# .whl/ holds pyserial and mltelemetry's own wheel, built beforehand with `pip wheel --no-deps -w .whl .`
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=/tmp/site
REPO=$(pwd)
cd /tmp  # the repository's own mltelemetry/ folder must not shadow the installed package
M="python3 -m mltelemetry"
S=/tmp/h200.db
W=/tmp/work
mkdir -p $W
nvidia-smi --query-gpu=name,driver_version,power.draw,temperature.gpu --format=csv

step "exporters"
$M pm emulate --driver wt300 --link /tmp/wt310 --profile cpu > /tmp/emulator.log 2>&1 &
sleep 3
$M exporter pm --driver wt300 --port /tmp/wt310 --meter wt310 --store $S --listen off --interval 1 > /tmp/pm.log 2>&1 &
$M exporter gpu --store $S --listen off --interval 0.1 > /tmp/gpu.log 2>&1 &
$M exporter host --store $S --listen off --interval 1 > /tmp/host.log 2>&1 &
sleep 5
COMMON="--store $S --backend torch --device cuda --workdir $W --export-dir $W/exports --no-progress --pause 2"

step "issue 10: interleaved baseline/cnn/transfer with --settle"
timeout 150 $M campaign run --campaign interleaved $COMMON --scenario baseline --scenario cnn --scenario transfer \
  --runs 2 --order interleaved --seconds 10 --settle --synthetic-images 100 --max-epochs 3
$M analyze --campaign interleaved --source $S --format json > $OUT/interleaved.json 2>&1

step "issue 10: --vary batch_size=32,128 --vary precision=fp32,bf16"
timeout 130 $M campaign run --campaign vary $COMMON --scenario baseline --scenario cnn --runs 1 --seconds 8 \
  --vary batch_size=32,128 --vary precision=fp32,bf16 --synthetic-images 100 --max-epochs 3
$M analyze --campaign vary --source $S --format json > $OUT/vary.json 2>&1

step "issue 10: cnn pipeline against its ceiling"
timeout 100 python3 $REPO/bench/gpu_pipeline.py --device cuda --scenario cnn --synthetic-images 600 --max-epochs 6 \
  --out $OUT/gpu_pipeline.json

step "issue 14: lm-train and lm-infer"
timeout 150 $M campaign run --campaign lm $COMMON --scenario baseline --scenario lm-train --scenario lm-infer \
  --runs 2 --seconds 8 --order interleaved --lm max_epochs=2 --lm steps_per_epoch=100 --lm prefill_rounds=50 \
  --lm decode_rounds=2
$M analyze --campaign lm --source $S --format json > $OUT/lm.json 2>&1

step "stop the exporters"
kill %2 %3 %4 2>/dev/null; sleep 3; kill %1 2>/dev/null
tail -n 3 /tmp/pm.log /tmp/gpu.log /tmp/host.log
cp $S $OUT/h200.db

step "issue 19: the demo on the GPU ($(left) s left)"
[ "$(left)" -gt 40 ] && timeout $(( $(left) - 10 )) $M demo --runs 1 --seconds 5 --store /tmp/demo.db > $OUT/demo.txt 2>&1
tail -40 $OUT/demo.txt
step "done"
