"""What each NVML call the GPU driver makes costs on this machine: wall and CPU time per call.

    python3 bench/gpu/nvml_costs.py [--gpu 0] [--out costs.json]
"""

from __future__ import annotations

import argparse
import json
import time

import pynvml

from mltelemetry.exporters.gpu.collector import GpuCollector
from mltelemetry.exporters.gpu.nvml import open_nvml


def cost(fn, reps: int) -> dict:
    fn()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fn()
    w1, c1 = time.perf_counter(), time.process_time()
    return {"reps": reps, "wall_us": round((w1 - w0) / reps * 1e6, 2), "cpu_us": round((c1 - c0) / reps * 1e6, 2)}


def spaced_cost(fn, period_s: float, reps: int) -> dict:
    """CPU and wall time per call when calls come ``period_s`` apart, as an exporter's ticks do (back-to-back calls
    can be answered from the driver's cache)."""
    wall = cpu = 0.0
    for _ in range(reps):
        time.sleep(period_s)
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = wall + time.perf_counter() - w0, cpu + time.process_time() - c0
    return {"reps": reps, "period_s": period_s, "wall_us": round(wall / reps * 1e6, 2),
            "cpu_us": round(cpu / reps * 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    nvml = open_nvml()
    h = pynvml.nvmlDeviceGetHandleByIndex(args.gpu)
    calls = {
        "field_values[186,185,83]": lambda: pynvml.nvmlDeviceGetFieldValues(h, [186, 185, 83]),
        "field_values[186,185]": lambda: pynvml.nvmlDeviceGetFieldValues(h, [186, 185]),
        "field_values[186]": lambda: pynvml.nvmlDeviceGetFieldValues(h, [186]),
        "field_values[185]": lambda: pynvml.nvmlDeviceGetFieldValues(h, [185]),
        "field_values[83]": lambda: pynvml.nvmlDeviceGetFieldValues(h, [83]),
        "field_values[191] (NVML_FI_DEV_ENERGY)": lambda: pynvml.nvmlDeviceGetFieldValues(h, [191]),
        "GetTotalEnergyConsumption": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
        "GetPowerUsage": lambda: pynvml.nvmlDeviceGetPowerUsage(h),
        "GetTemperature": lambda: pynvml.nvmlDeviceGetTemperature(h, 0),
        "GetUtilizationRates": lambda: pynvml.nvmlDeviceGetUtilizationRates(h),
        "GetMemoryInfo": lambda: pynvml.nvmlDeviceGetMemoryInfo(h),
        "GetPerformanceState": lambda: pynvml.nvmlDeviceGetPerformanceState(h),
        "GetCurrPcieLinkGeneration": lambda: pynvml.nvmlDeviceGetCurrPcieLinkGeneration(h),
        "GetCurrPcieLinkWidth": lambda: pynvml.nvmlDeviceGetCurrPcieLinkWidth(h),
        "GetClockInfo(SM)": lambda: pynvml.nvmlDeviceGetClockInfo(h, 1),
        "GetCurrentClocksEventReasons": lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
        "GetEnforcedPowerLimit": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h),
    }
    results: dict = {"name": pynvml.nvmlDeviceGetName(h), "driver": pynvml.nvmlSystemGetDriverVersion(),
                     "nvml_version": pynvml.nvmlSystemGetNVMLVersion(), "calls": {}}
    for name, fn in calls.items():
        try:
            results["calls"][name] = cost(fn, 50 if "83" in name or "Energy" in name else 300)
        except pynvml.NVMLError as e:
            results["calls"][name] = {"error": str(e)}
    results["spaced_0.1s"] = {name: spaced_cost(calls[name], 0.1, 30) for name in
                              ("field_values[186,185]", "field_values[186]", "GetPowerUsage", "GetTemperature")}
    gpu = nvml.gpu(args.gpu)
    results["driver_read_all_indicators"] = cost(gpu.read, 50)
    collector = GpuCollector(nvml, "bench", [args.gpu])
    results["collector_tick_one_gpu"] = cost(lambda: collector.sample(time.time_ns()), 50)
    results["unsupported_on_this_gpu"] = sorted(gpu.unsupported)
    before = time.time_ns()
    values = pynvml.nvmlDeviceGetFieldValues(h, [186, 185, 83])
    after = time.time_ns()
    results["field_value_timestamps_us_minus_call_start_us"] = [
        {"field": v.fieldId, "return": v.nvmlReturn, "timestamp_us": v.timestamp,
         "offset_from_call_start_us": v.timestamp - before // 1000, "latency_us": v.latencyUsec} for v in values]
    results["field_call_wall_us"] = (after - before) / 1000
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
