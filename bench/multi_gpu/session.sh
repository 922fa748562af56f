#!/bin/bash
# Issue 15 (and 14) on a machine with two GPUs (device tool, kind nvidia-h200-x2; repository root; pyserial and
# mltelemetry's own wheel carried in .whl/). The exporters (emulated WT310 following the machine's CPU, host, GPU
# at 0.1 s on every GPU) and a direct reader of both GPUs' energy counters run beside one campaign:
# baseline, lm-train and cnn with --processes 2 (DDP, NCCL, one process per GPU) and lm-infer, 3 runs each,
# interleaved, --settle. Then per window >= 5 s: summed GPU energy against the direct counters (compare.py).
# PROCESSES=1 runs the same campaign on one GPU; PIPELINE=1 adds bench/gpu_pipeline.py (issue 10).
# Results: $OUT/multi.db, reference.json, compare.json, analyze.json, log.txt (bench/multi_gpu.md).
set -u
source bench/device_lib.sh
device_setup /tmp/multi-out log.txt
S=/tmp/multi.db
W=/tmp/work
mkdir -p $W
nvidia-smi --query-gpu=index,name,driver_version,power.draw,temperature.gpu --format=csv
nvidia-smi topo -m | head -5
python3 -c 'import torch; print("torch", torch.__version__, "GPUs", torch.cuda.device_count())'
df -h /dev/shm | tail -1

step "exporters and the direct counter reader"
start_exporters $S cpu:55,85 0.1 --counter-interval 0  # the counter every tick: the most exact windows
python3 $REPO/bench/multi_gpu/reference.py --out $OUT/reference.json --period 0.02 > /tmp/reference.log 2>&1 &
REF=$!
sleep 5

P=${PROCESSES:-2}
step "campaign multi: baseline, lm-train ($P processes), lm-infer, cnn ($P processes) x ${RUNS:-3}"
timeout ${CAMPAIGN_S:-420} $M campaign run --campaign multi --store $S --backend torch --device cuda --processes $P \
  --workdir $W --export-dir $W/exports --no-progress --pause 2 --order interleaved --runs ${RUNS:-3} --seconds 10 \
  --scenario baseline --scenario lm-train --scenario lm-infer --scenario cnn --settle --settle-limit 30 \
  --synthetic-images ${IMAGES:-1000} --max-epochs ${EPOCHS:-20} --target-accuracy 1.0 \
  --lm max_epochs=2 --lm steps_per_epoch=100 --lm prefill_rounds=200 --lm decode_rounds=4
echo "campaign exit $?"

step "stop the exporters and the reader"
kill $REF; sleep 2
stop_exporters
tail -n 3 /tmp/reference.log
cp $S $OUT/multi.db
python3 $REPO/bench/multi_gpu/compare.py $S $OUT/reference.json --campaign multi --out $OUT/compare.json
$M analyze --campaign multi --source $S --format json > $OUT/analyze.json 2> $OUT/analyze.err; tail -3 $OUT/analyze.err
$M analyze --campaign multi --source $S
if [ -n "${PIPELINE:-}" ]; then  # issue 10: the cnn scenario's train windows against its ceiling
  step "cnn pipeline against its ceiling"
  timeout ${PIPELINE_S:-120} python3 $REPO/bench/gpu_pipeline.py --device cuda --scenario cnn --synthetic-images 600 \
    --max-epochs 7 --label warmup --out $OUT/gpu_pipeline.json
fi
step "done"
