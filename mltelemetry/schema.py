"""Every metric and the event record: the one place names come from.

Exporters, sinks, the store, the analysis and the dashboards all import names from here,
so a renamed metric is a one-line change. Names follow Prometheus conventions: a
``mltelemetry_`` prefix, base units, ``_total`` on counters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

PREFIX = "mltelemetry_"

MetricType = Literal["gauge", "counter", "info"]


@dataclass(frozen=True)
class Metric:
    """One metric: full name, type, unit, a full-sentence help text and its label names."""

    name: str
    type: MetricType
    unit: str
    help: str
    labels: tuple[str, ...] = ("host",)


class Sample(NamedTuple):
    """One reading of one series: metric name, labels, value (base units) and wall time in ns."""

    metric: str
    labels: dict[str, str]
    value: float
    ts_ns: int


METRICS: dict[str, Metric] = {}


def _metric(name: str, type: MetricType, unit: str, help: str, labels: tuple[str, ...] = ("host",)) -> str:
    full = PREFIX + name
    if type == "counter" and not full.endswith("_total"):
        raise ValueError(f"counter {full} must end in _total")
    if type == "info" and not full.endswith("_info"):
        raise ValueError(f"info metric {full} must end in _info")
    METRICS[full] = Metric(full, type, unit, help, labels)
    return full


# --- power meter -------------------------------------------------------------------------
PM_LABELS = ("host", "meter")
PM_POWER = _metric("pm_power_watts", "gauge", "W",
                   "Active power measured by the power meter, averaged over its update interval.", PM_LABELS)
PM_VOLTAGE = _metric("pm_voltage_volts", "gauge", "V", "RMS voltage measured by the power meter.", PM_LABELS)
PM_CURRENT = _metric("pm_current_amperes", "gauge", "A", "RMS current measured by the power meter.", PM_LABELS)
PM_ENERGY = _metric("pm_energy_joules_total", "counter", "J",
                    "Energy integrated by the exporter from the meter's power readings.", PM_LABELS)
PM_SAMPLES = _metric("pm_samples_total", "counter", "1", "Valid readings taken from the power meter.", PM_LABELS)
PM_INVALID = _metric("pm_invalid_readings_total", "counter", "1",
                     "Readings from the power meter that were garbage, partial, NAN, INF or over-range "
                     "and were dropped.", PM_LABELS)
PM_GAP = _metric("pm_gap_seconds_total", "counter", "s",
                 "Seconds for which no energy could be integrated because the meter gave no valid reading.",
                 PM_LABELS)
PM_METER_ENERGY = _metric("pm_meter_energy_joules_total", "counter", "J",
                          "Energy integrated by the meter itself (its own integrator), beside ours.", PM_LABELS)
PM_UNCERTAINTY = _metric("pm_uncertainty_ratio", "gauge", "1",
                         "Relative uncertainty of the last power reading as the meter or PTDaemon reports it.",
                         PM_LABELS)
PM_SAMPLING_RATE = _metric("pm_sampling_rate_hertz", "gauge", "Hz",
                           "Valid readings per second achieved over the last minute.", PM_LABELS)
PM_INFO = _metric("pm_meter_info", "info", "1", "Identity of the power meter (model, serial, firmware, driver).",
                  PM_LABELS + ("driver", "model", "serial", "firmware"))
PM_CONNECTED = _metric("pm_connected", "gauge", "1",
                       "Whether the exporter currently talks to the power meter (1) or not (0).", PM_LABELS)
PM_DISCONNECTS = _metric("pm_disconnects_total", "counter", "1",
                         "Times the exporter lost the power meter's port or connection (unplugged, closed, EIO).",
                         PM_LABELS)

# --- host ----------------------------------------------------------------------------------
HOST_CPU_UTILIZATION = _metric("host_cpu_utilization_ratio", "gauge", "1",
                               "Utilisation of one logical CPU over the last sampling interval, 0 to 1.",
                               ("host", "cpu"))
# Whole-machine totals have names of their own, so a sum() or avg() over the per-device series never
# counts a total with its parts. (Stored before 0.2: host_cpu_utilization_ratio{cpu="total"}.)
HOST_CPU_TOTAL_UTILIZATION = _metric("host_cpu_total_utilization_ratio", "gauge", "1",
                                     "Utilisation of the whole machine (all logical CPUs) over the last sampling "
                                     "interval, 0 to 1.")
HOST_MEMORY_USED = _metric("host_memory_used_bytes", "gauge", "B", "Memory in use (total minus available).")
HOST_MEMORY_AVAILABLE = _metric("host_memory_available_bytes", "gauge", "B",
                                "Memory available to new processes without swapping.")
HOST_MEMORY_TOTAL = _metric("host_memory_total_bytes", "gauge", "B", "Physical memory installed.")
HOST_SWAP_USED = _metric("host_swap_used_bytes", "gauge", "B", "Swap space in use.")
HOST_LOAD = _metric("host_load_average", "gauge", "1",
                    "System load average over the given period.", ("host", "period"))
HOST_DISK_READ = _metric("host_disk_read_bytes_total", "counter", "B",
                         "Bytes read from the disk (whole disks only unless the exporter runs with "
                         "--disk-devices all, so a sum over devices counts each byte once).", ("host", "device"))
HOST_DISK_WRITTEN = _metric("host_disk_written_bytes_total", "counter", "B",
                            "Bytes written to the disk (whole disks only unless the exporter runs with "
                            "--disk-devices all).", ("host", "device"))
HOST_NET_RECEIVED = _metric("host_network_received_bytes_total", "counter", "B",
                            "Bytes received on the network interface.", ("host", "interface"))
HOST_NET_TRANSMITTED = _metric("host_network_transmitted_bytes_total", "counter", "B",
                               "Bytes sent on the network interface.", ("host", "interface"))
HOST_RAPL_ENERGY = _metric("host_rapl_energy_joules_total", "counter", "J",
                           "Energy of one RAPL zone, made monotonic across the counter's wrap-around.",
                           ("host", "zone"))
HOST_CPU_SECONDS = _metric("host_cpu_seconds_total", "counter", "s",
                           "Seconds each core spent in each mode (user, nice, system, idle, iowait, irq, softirq, "
                           "steal), as node_exporter's node_cpu_seconds_total: a window's utilisation is "
                           "1 − Δ(idle + iowait) / Δ(all modes), whatever the scrape interval.",
                           ("host", "cpu", "mode"))

# --- GPU -----------------------------------------------------------------------------------
GPU_LABELS = ("host", "gpu", "uuid", "name")
GPU_POWER = _metric("gpu_power_watts", "gauge", "W",
                    "GPU board power from NVML, one series per GPU; kind=\"instant\" (field 186) or \"usage\" "
                    "(nvmlDeviceGetPowerUsage, where the fields are missing).", GPU_LABELS + ("kind",))
# NVML's 1 s average beside the instant power: a name of its own, so sum(gpu_power_watts) counts each GPU once.
# (Stored before 0.2: gpu_power_watts{kind="average"}.)
GPU_POWER_AVERAGE = _metric("gpu_power_average_watts", "gauge", "W",
                            "GPU board power averaged by NVML over the last second (field 185).", GPU_LABELS)
GPU_ENERGY = _metric("gpu_energy_joules_total", "counter", "J",
                     "GPU energy: method=\"nvml_counter\" from NVML's hardware counter (Volta and newer), "
                     "\"nvml_counter_power_shaped\" the counter read less often than power and shaped by it in "
                     "between, \"power_integral\" integrated from power at the sampling rate where there is none.",
                     GPU_LABELS + ("method",))
GPU_TEMPERATURE = _metric("gpu_temperature_celsius", "gauge", "Cel", "GPU core temperature.", GPU_LABELS)
GPU_UTILIZATION = _metric("gpu_utilization_ratio", "gauge", "1",
                          "Fraction of the last sample period in which a kernel ran on the GPU.", GPU_LABELS)
GPU_MEMORY_UTILIZATION = _metric("gpu_memory_utilization_ratio", "gauge", "1",
                                 "Fraction of the last sample period in which GPU memory was read or written.",
                                 GPU_LABELS)
GPU_MEMORY_USED = _metric("gpu_memory_used_bytes", "gauge", "B", "GPU memory allocated.", GPU_LABELS)
GPU_PSTATE = _metric("gpu_performance_state", "gauge", "1", "GPU performance state (0 fastest, 15 slowest).",
                     GPU_LABELS)
GPU_PCIE_GENERATION = _metric("gpu_pcie_link_generation", "gauge", "1", "Current PCIe link generation.",
                              GPU_LABELS)
GPU_PCIE_WIDTH = _metric("gpu_pcie_link_width", "gauge", "1", "Current PCIe link width (lanes).", GPU_LABELS)
GPU_CLOCK = _metric("gpu_clock_hertz", "gauge", "Hz", "Current GPU clock; clock is sm, memory or graphics.",
                    GPU_LABELS + ("clock",))
GPU_THROTTLE = _metric("gpu_throttle_reasons", "gauge", "1",
                       "Bit mask of NVML's current clock throttle reasons (0 = not throttled).", GPU_LABELS)
GPU_POWER_LIMIT = _metric("gpu_power_limit_watts", "gauge", "W", "Enforced GPU power limit.", GPU_LABELS)
GPU_FAN = _metric("gpu_fan_speed_ratio", "gauge", "1", "GPU fan speed as a fraction of its maximum.",
                  GPU_LABELS)
GPU_UP = _metric("gpu_up", "gauge", "1", "Whether the GPU answers NVML (1) or fell off the bus (0).", GPU_LABELS)
GPU_BUSY_SECONDS = _metric("gpu_busy_seconds_total", "counter", "s",
                           "Seconds the GPU was busy: NVML's utilisation times the time since the exporter's "
                           "previous reading, summed. A window's mean load is its increase over the window's "
                           "length, whatever the scrape interval (gpu_utilization_ratio is one reading).", GPU_LABELS)

# --- every exporter ------------------------------------------------------------------------
EXPORTER_LABELS = ("host", "exporter")
EXPORTER_SAMPLE_DURATION = _metric("exporter_sample_duration_seconds", "gauge", "s",
                                   "Longest sampling tick since the previous report (at most once a second).",
                                   EXPORTER_LABELS)
EXPORTER_SAMPLES = _metric("exporter_samples_total", "counter", "1", "Samples the exporter has produced.",
                           EXPORTER_LABELS)
EXPORTER_ERRORS = _metric("exporter_errors_total", "counter", "1",
                          "Sampling ticks that failed with an error.", EXPORTER_LABELS)
EXPORTER_MISSED_TICKS = _metric("exporter_missed_ticks_total", "counter", "1",
                                "Ticks skipped because the previous tick ran past their deadline.",
                                EXPORTER_LABELS)
BUILD_INFO = _metric("build_info", "info", "1",
                     "The exporter's build: mltelemetry and Python versions, and its device driver's where it has one.",
                     EXPORTER_LABELS + ("version", "python", "driver"))
# Push sinks (InfluxDB) report their own health beside the exporter's; sink names the sink ("influxdb").
SINK_LABELS = EXPORTER_LABELS + ("sink",)
EXPORTER_SPOOL_BYTES = _metric("exporter_spool_bytes", "gauge", "B",
                               "Bytes waiting in the sink's local spool for the server to come back.", SINK_LABELS)
EXPORTER_SPOOL_FILL = _metric("exporter_spool_fill_ratio", "gauge", "1",
                              "Fill of the sink's local spool, 0 (empty) to 1 (full: the oldest lines get dropped).",
                              SINK_LABELS)
EXPORTER_SPOOL_DROPPED = _metric("exporter_spool_dropped_samples_total", "counter", "1",
                                 "Spooled lines (samples or events) dropped because the spool was full.", SINK_LABELS)
EXPORTER_SINK_WRITTEN = _metric("exporter_sink_written_samples_total", "counter", "1",
                                "Lines (samples or events) the sink's server has accepted.", SINK_LABELS)
EXPORTER_SINK_REJECTED = _metric("exporter_sink_rejected_samples_total", "counter", "1",
                                 "Lines the sink's server refused as malformed or too large; they are dropped.",
                                 SINK_LABELS)
EXPORTER_SINK_ERRORS = _metric("exporter_sink_errors_total", "counter", "1",
                               "Writes to the sink's server that failed (server down or answering an error).",
                               SINK_LABELS)


# --- workload events as series (how events reach Prometheus, VictoriaMetrics and InfluxDB) ------
EVENT_LABELS = ("host", "campaign", "scenario", "run", "action", "epoch", "status")
EVENT_START = _metric("event_start_seconds", "gauge", "s",
                      "Start of a finished workload event, UTC seconds since the epoch.", EVENT_LABELS)
EVENT_END = _metric("event_end_seconds", "gauge", "s",
                    "End of a finished workload event, UTC seconds since the epoch.", EVENT_LABELS)
EVENT_FIELD = _metric("event_field_value", "gauge", "1",
                      "A numeric field of a finished workload event (loss, accuracy, ...).", EVENT_LABELS + ("field",))
WORKLOAD_INFO = _metric("workload_info", "info", "1", "The campaign, scenario, run, action and epoch running now.",
                        ("host", "campaign", "scenario", "run", "action", "epoch"))

# Contract for push backends (InfluxDB line protocol, also VictoriaMetrics' /api/v2/write, which must run
# with -influxSkipSingleField so the names match Prometheus'):
# - a sample is a point of measurement <full metric name>, tags = its labels, one float field "value";
# - an event is a point of measurement EVENT_MEASUREMENT, tags = EVENT_LABELS (epoch omitted when None, host
#   where the publisher knows it), float fields start_seconds and end_seconds plus its numeric fields, string
#   fields for its text fields (framework, device, error, ...), boolean ones for its flags; timestamp = its end.
#   In VictoriaMetrics that yields the series EVENT_START and EVENT_END above.
# In Prometheus (pull), the workload serves EVENT_START / EVENT_END / EVENT_FIELD for every finished event.
# Series /metrics serves with their reading's own time (an explicit timestamp), not the scrape's: the
# counters a window's energy is read from. A scrape comes up to one interval after the reading, and
# stamped at the scrape every window edge would read the counter at the wrong moment (README, "Exact
# energy through Prometheus"). The other series keep scrape time and Prometheus' staleness handling.
EXPOSED_WITH_READING_TIME = frozenset({PM_ENERGY, PM_METER_ENERGY, GPU_ENERGY, HOST_RAPL_ENERGY})
SAMPLE_FIELD = "value"
EVENT_MEASUREMENT = PREFIX + "event"


def metric(name: str) -> Metric:
    """The schema entry for a full metric name; KeyError for names the schema does not know."""
    return METRICS[name]


# --- events --------------------------------------------------------------------------------
ACTIONS = ("campaign", "run", "baseline", "idle", "prepare_data", "create_model", "train", "epoch",
           "compute", "export", "cleanup", "cooldown", "settle")
# A run or campaign event is written ``running`` when it starts (its claim, end_ns = start_ns) and replaced by
# its final status when it ends; a claim whose process died is marked ``lost`` by ``--resume``.
STATUSES = ("ok", "failed", "aborted", "running", "lost")


@dataclass
class Event:
    """One annotated interval of the workload: a campaign, a run, an action or an epoch.

    ``start_ns``/``end_ns`` are UTC wall-clock nanoseconds, the clock the exporters use.
    ``fields`` holds everything else (loss, accuracy, parameter counts, framework, error, ...).
    """

    campaign: str
    scenario: str
    run: int
    action: str
    start_ns: int
    end_ns: int
    epoch: int | None = None
    status: str = "ok"
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def fields_json(self) -> str:
        return json.dumps(self.fields, sort_keys=True, default=str)


# --- event fields the analysis reads (numbers; writers of events use these names) -------------------
FIELD_LOSS = "loss"
FIELD_ACCURACY = "accuracy"  # 0–1
FIELD_VAL_LOSS = "val_loss"
FIELD_VAL_ACCURACY = "val_accuracy"  # 0–1: the "useful work" of the paper's efficiency factor
FIELD_CORRECT = "correct_classifications"  # count of correctly classified test samples
FIELD_CODECARBON_ENERGY = "codecarbon_energy_joules"  # CodeCarbon's estimate for the window, J
FIELD_CODECARBON_ENERGY_KWH = "codecarbon_energy_kwh"  # the same in CodeCarbon's own unit (energy_consumed)
# Written by the workload's ML scenarios (create_model, train) and cooldown events.
FIELD_PARAMS_TOTAL = "params_total"  # parameters as Keras counts them (BatchNorm moving statistics included)
FIELD_PARAMS_TRAINABLE = "params_trainable"
FIELD_PRECISION = "precision"  # run, create_model: fp32, tf32, bf16 or fp16 (workload.config.PRECISIONS)
FIELD_BATCH_SIZE = "batch_size"  # run, create_model, train: images (sequences) per training step and process
FIELD_EPOCHS = "epochs"  # epochs the train window ran
FIELD_REACHED_TARGET = "reached_target"  # bool: validation accuracy reached target_accuracy
FIELD_TARGET_ACCURACY = "target_accuracy"  # 0–1
FIELD_PROCESSES = "processes"  # run, create_model, train: DDP processes (one per GPU) of a torch run
FIELD_COOLDOWN_WAITED = "waited_s"  # seconds a cooldown event waited
FIELD_COOLDOWN_REACHED = "reached"  # bool: the GPU came within the margin of the reference
FIELD_GPU_TEMPERATURE_START = "start_temperature_c"  # hottest GPU at the cooldown's start, °C
FIELD_GPU_TEMPERATURE_END = "end_temperature_c"  # hottest GPU at its end, °C
FIELD_GPU_TEMPERATURE_REFERENCE = "reference_c"  # the baseline's temperature the cooldown aims at, °C
# Tokens a window processed (lm-train epochs and train, lm-infer prefill and decode): energy per token.
FIELD_TOKENS = "tokens"
FIELD_PROMPT_TOKENS = "prompt_tokens"
FIELD_GENERATED_TOKENS = "generated_tokens"
FIELD_SETTLE_GPU_POWER = "gpu_power_w"  # settle: the GPUs' total power at the end of the wait, W
FIELD_SETTLE_REFERENCE = "reference_w"  # settle: the first baseline's GPU power it aims at, W
FIELD_SETTLE_MARGIN = "margin"  # settle: watts above the reference that count as settled
# A --vary campaign: every event of a run carries its variant ("batch_size=32,precision=bf16") and each setting.
FIELD_VARIANT = "variant"
FIELD_PLAN = "plan"  # the campaign event: its plan as a JSON string (what --resume must match)
