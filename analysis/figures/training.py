"""What the training script recorded on its events (loss, accuracy, correct classifications, tokens, CodeCarbon's
energy), and the figures made of them with the energy: accuracy and correct classifications per Wh, time and
energy to the run's target accuracy, energy and time per token, CodeCarbon against the meter."""

from __future__ import annotations

import numpy as np

from mltelemetry import schema
from mltelemetry.analysis.figures.context import J_PER_WH, Context
from mltelemetry.analysis.windows import field_value
from mltelemetry.schema import Event

TRAINING_FIELDS = [schema.FIELD_LOSS, schema.FIELD_ACCURACY, schema.FIELD_VAL_LOSS, schema.FIELD_VAL_ACCURACY,
                   schema.FIELD_CORRECT]


FIGURES = TRAINING_FIELDS + ["efficiency_acc_per_wh", "correct_per_wh", "time_to_target_s", "energy_to_target_wh",
                              "tokens", "energy_per_token_j", "gpu_energy_per_token_j", "cpu_energy_per_token_j",
                              "time_per_token_ms", "tokens_per_wh", "codecarbon_wh", "codecarbon_ratio"]


def codecarbon_wh(event: Event) -> float:
    joules = field_value(event, schema.FIELD_CODECARBON_ENERGY)
    if np.isfinite(joules):
        return joules / J_PER_WH
    return field_value(event, schema.FIELD_CODECARBON_ENERGY_KWH) * 1000.0


def time_to_target(events: list[Event], enclosing: list[Event | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per run: seconds from its start to the end of its first epoch whose validation accuracy reached the run's
    target accuracy (its train window's ``target_accuracy``, else the run's own), and that epoch's end (ns); NaN and
    0 for other windows and for runs without a target or that never reached it."""
    index = {id(e): i for i, e in enumerate(events)}
    targets: dict[int, float] = {}  # run position → target accuracy
    epochs: dict[int, list[Event]] = {}
    for e, run in zip(events, enclosing):
        if run is None or run is e:
            if e.action == "run" and np.isfinite(field_value(e, schema.FIELD_TARGET_ACCURACY)):
                targets.setdefault(index[id(e)], field_value(e, schema.FIELD_TARGET_ACCURACY))
            continue
        if e.action == "train" and np.isfinite(field_value(e, schema.FIELD_TARGET_ACCURACY)):
            targets[index[id(run)]] = field_value(e, schema.FIELD_TARGET_ACCURACY)
        elif e.action == "epoch":
            epochs.setdefault(index[id(run)], []).append(e)
    seconds, ends = np.full(len(events), np.nan), np.zeros(len(events), np.int64)
    for i, target in targets.items():
        run = events[i]
        for epoch in sorted(epochs.get(i, []), key=lambda e: (e.start_ns, e.end_ns)):  # the first in time
            if field_value(epoch, schema.FIELD_VAL_ACCURACY) >= target:
                seconds[i], ends[i] = (epoch.end_ns - run.start_ns) / 1e9, epoch.end_ns
                break
    return seconds, ends


def provide(ctx: Context) -> None:
    events, columns, n = ctx.windows.events, ctx.columns, ctx.windows.n
    starts, duration = ctx.windows.starts, ctx.windows.duration
    for name in TRAINING_FIELDS:
        columns[name] = np.array([field_value(e, name) for e in events])
    epochs_of: dict[tuple[str, int], list[Event]] = {}
    for e in sorted((e for e in events if e.action == "epoch" and e.epoch is not None), key=lambda e: e.epoch):
        epochs_of.setdefault((e.scenario, e.run), []).append(e)
    for i, e in enumerate(events):  # a run or train window without its own figures takes its last epoch's,
        if e.action in ("run", "train"):  # among the epochs that start inside it (a resumed run repeats its key)
            last: dict[str, float] = {}
            for epoch in epochs_of.get((e.scenario, e.run), []):
                if e.start_ns <= epoch.start_ns <= e.end_ns:
                    last.update({name: field_value(epoch, name) for name in TRAINING_FIELDS
                                 if np.isfinite(field_value(epoch, name))})
            for name, value in last.items():
                if not np.isfinite(columns[name][i]):
                    columns[name][i] = value
    columns["time_to_target_s"], target_ends = time_to_target(events, ctx.windows.enclosing)
    reached = np.isfinite(columns["time_to_target_s"])
    columns["energy_to_target_wh"] = np.full(n, np.nan)
    if reached.any():
        columns["energy_to_target_wh"][reached] = ctx.wall.energy(starts[reached], target_ends[reached]) / J_PER_WH
    with np.errstate(invalid="ignore", divide="ignore"):
        energy_wh = columns["energy_wh"]
        columns["efficiency_acc_per_wh"] = np.where(energy_wh > 0, columns[schema.FIELD_VAL_ACCURACY] / energy_wh,
                                                    np.nan)
        columns["correct_per_wh"] = np.where(energy_wh > 0, columns[schema.FIELD_CORRECT] / energy_wh, np.nan)
        # per token (lm-train's epochs and train, lm-infer's prefill and decode record the tokens they processed)
        tokens = np.array([field_value(e, schema.FIELD_TOKENS) for e in events])
        per_token = np.where(tokens > 0, 1.0 / tokens, np.nan)
        columns["tokens"] = tokens
        columns["energy_per_token_j"] = energy_wh * J_PER_WH * per_token
        columns["gpu_energy_per_token_j"] = columns["gpu_energy_wh"] * J_PER_WH * per_token
        columns["cpu_energy_per_token_j"] = columns["cpu_energy_wh"] * J_PER_WH * per_token
        columns["time_per_token_ms"] = duration * 1e3 * per_token
        columns["tokens_per_wh"] = np.where(energy_wh > 0, tokens / energy_wh, np.nan)
        columns["codecarbon_wh"] = np.array([codecarbon_wh(e) for e in events])
        columns["codecarbon_ratio"] = columns["codecarbon_wh"] / energy_wh
