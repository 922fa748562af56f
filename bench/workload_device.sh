#!/bin/bash
# The issue's GPU check, for one `device` call (NOT RUN YET: the H100 was reserved for the GPU exporter's work).
# The cnn scenario on the torch backend, 3 runs of a few epochs on synthetic 224×224 images, with the GPU
# exporter writing to the store, a baseline before, cooldown between runs, then `analyze`. Per-epoch GPU energy
# and temperature land in $OUT/epochs.csv, the whole analysis in $OUT/analysis.json.
#   run: bash bench/workload_device.sh     (on the device machine, from the repository root)
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/workload-device-out}
W=/tmp/workload-device
mkdir -p "$W" "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=index,name,temperature.gpu,power.draw --format=csv
python3 -m pip install -q --no-deps --no-build-isolation -e . >"$W/pip.log" 2>&1 || { tail -3 "$W/pip.log"; exit 3; }
python3 -c "import torch, PIL; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 3
STORE="$W/store.db"
rm -f "$STORE"*
python3 -m mltelemetry exporter gpu --store "$STORE" --listen off --interval 0.5 --host-label sut >"$W/gpu.log" 2>&1 &
EXPORTER=$!
sleep 5
python3 -m mltelemetry campaign run --campaign h100-cnn --store "$STORE" --host-label sut --no-progress \
  --scenario baseline --scenario cnn --runs 3 --order interleaved --seconds 30 --pause 5 \
  --backend torch --device cuda --image-size 224 --batch-size 32 --synthetic-images 200 --max-epochs 6 \
  --target-accuracy 1.0 --cooldown --cooldown-margin 3 --cooldown-limit 120 --export-dir "$W/exports"
echo "campaign exit code $?"
sleep 3
kill -TERM $EXPORTER; wait $EXPORTER
python3 -m mltelemetry analyze --campaign h100-cnn --source "$STORE" --format json >"$OUT/analysis.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
result = json.load(open(f"{out}/analysis.json"))
rows = [w for w in result["windows"] if w["action"] in ("epoch", "cooldown", "run")]
keys = ["scenario", "run", "action", "epoch", "status", "duration_s", "gpu_energy_wh", "gpu_temperature_c",
        "val_accuracy", "loss"]
with open(f"{out}/epochs.csv", "w") as f:
    f.write(",".join(keys) + "\n")
    for w in rows:
        f.write(",".join("" if w.get(k) is None else str(w.get(k)) for k in keys) + "\n")
print(open(f"{out}/epochs.csv").read())
PY
cp "$STORE" "$OUT/" 2>/dev/null; ls -la "$OUT"
