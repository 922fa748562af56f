# Shared preamble of the device-machine scripts (sourced, from the repository root; .whl/ carried with pyserial
# and mltelemetry's own wheel, built beforehand with `pip wheel --no-deps --no-build-isolation -w .whl .`).
#   device_setup OUT LOG   installs the wheels into /tmp/site, tees everything to $OUT/LOG, sets REPO (the
#                          repository), M (the CLI) and step(), and moves to /tmp so the repository's own
#                          mltelemetry/ folder does not shadow the installed package
#   start_exporters STORE PROFILE GPU_INTERVAL [GPU OPTION...]   emulated WT310 following the machine's CPU
#                          (PROFILE, e.g. cpu:55,85), exporter pm and host at 1 s and exporter gpu at GPU_INTERVAL
#                          (with the options that follow), into STORE
#   stop_exporters         the exporters, then the emulator
# NVLink multicast stays off for every NCCL program started from here.
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

device_setup() {
  OUT=${OUT:-$1}
  mkdir -p "$OUT"
  exec > >(tee "$OUT/$2") 2>&1
  START=$(date +%s)
  # compiled, as a lab's pip install is; so is a copy of the machine's pynvml, which has no .pyc there (compiled at
  # every start, pynvml alone left an exporter ≈ 14 MB larger)
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 3
  python3 -c "import pynvml, shutil; shutil.copy(pynvml.__file__, '/tmp/site/')" && python3 -m compileall -q /tmp/site/pynvml.py
  export PYTHONPATH=/tmp/site
  REPO=$(pwd)
  cd /tmp || exit 3
  M="python3 -m mltelemetry"
}

step() { echo; echo "=== $1 (t=$(( $(date +%s) - START )) s)"; }

start_exporters() {
  $M pm emulate --driver wt300 --link /tmp/wt310 --profile "$2" > /tmp/emulator.log 2>&1 &
  EMULATOR=$!
  for _ in $(seq 50); do [ -e /tmp/wt310 ] && break; sleep 0.2; done
  $M exporter pm --driver wt300 --port /tmp/wt310 --meter wt310 --store "$1" --listen off --interval 1 > /tmp/pm.log 2>&1 &
  EXPORTERS=$!
  $M exporter gpu --store "$1" --listen off --interval "$3" "${@:4}" > /tmp/gpu.log 2>&1 &
  EXPORTERS="$EXPORTERS $!"
  $M exporter host --store "$1" --listen off --interval 1 > /tmp/host.log 2>&1 &
  EXPORTERS="$EXPORTERS $!"
}

stop_exporters() {
  kill $EXPORTERS 2>/dev/null; sleep 3; kill $EMULATOR 2>/dev/null
  tail -n 3 /tmp/pm.log /tmp/gpu.log /tmp/host.log
}
