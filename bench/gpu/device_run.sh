#!/bin/bash
# The one device call (see bench/gpu/README.md): install the project, time NVML's calls, run the GPU
# tests, run the exporter at 0.1 s and 1 s around a bursty PyTorch load on GPU 0, then (where there
# are two or more GPUs) all GPUs at 0.1 s with the load on GPU 1, and analyse. Results go to $OUT.
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/gpu-bench-out}
W=/tmp/gpu-bench
mkdir -p "$W" "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
REPO=$(pwd)
nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,temperature.gpu,pcie.link.gen.current,pcie.link.width.current --format=csv
python3 -c "import sys, pynvml, typer, prometheus_client, psutil, pandas; print(sys.version.split()[0], 'typer', typer.__version__)"
if ! python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$W/pip.log" 2>&1; then
  echo "editable install failed ($(tail -1 "$W/pip.log")); using a path shim"
  mkdir -p /tmp/shim/mltelemetry
  printf 'import os\n__path__ = [os.path.join(%r, "mltelemetry"), %r]\nexec(open(__path__[0] + "/__init__.py").read())\n' \
    "$REPO" "$REPO" >/tmp/shim/mltelemetry/__init__.py
  export PYTHONPATH=/tmp/shim
fi
python3 -c "import mltelemetry.exporters.gpu.collector" || exit 3
echo "== NVML call costs"; python3 bench/gpu/nvml_costs.py --gpu 0 --out "$W/nvml_costs.json"
echo "== update periods"; python3 bench/gpu/update_period.py --gpu 0 --out "$W/update_period.json"
echo "== tests"; python3 -m pytest -q -s -rs -p no:cacheprovider tests/integration/test_gpu_real.py tests/unit/test_gpu.py tests/integration/test_gpu_integration.py
echo "== main run"; python3 bench/gpu/run_exporters.py --out "$W" --tag main --intervals 0.1,1 --gpus 0 --load-gpu 0
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
  echo "== multi-GPU run"
  python3 bench/gpu/run_exporters.py --out "$W" --tag multi --intervals 0.1 --gpus all --load-gpu 1 --scale 0.25 --warmup 2
fi
echo "== analysis"; python3 bench/gpu/analyze.py "$W" --tag main --multi-tag multi
cp "$W/results.json" "$W/main_metrics.txt" "$OUT/" 2>/dev/null
tar -czf "$OUT/bundle.tar.gz" -C "$W" --exclude=pip.log . && ls -la "$OUT"
