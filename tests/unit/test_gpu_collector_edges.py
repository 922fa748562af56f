"""Edges of the GPU collector (exporters/gpu/collector.py) that mutation testing found unchecked (bench/mutation.md).

On the scripted fake NVML (tests/fakes/fake_nvml.py): the counter is the exact integral of the scripted power.
With ``counter_interval_s`` the counter is read once a second and power every tick, and each tick between two
reads gets the counter's increase shared out in proportion to the power integrated (trapezoid between the power
readings), by time where power is zero throughout.
"""

import pytest

from fakes.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step
from mltelemetry import schema
from mltelemetry.exporters.gpu import nvml
from mltelemetry.exporters.gpu.collector import GpuCollector


def shaped_energy(steps, ticks_s, counter_interval_s=1.0, energy_at_start_j=1000) -> dict[float, float]:
    """The published energy (J) at each tick of a GPU playing ``steps``; its counter read every counter_interval_s."""
    fake = FakeNvml([FakeGpu(steps=steps, energy_at_start_mj=energy_at_start_j * 1000)], clock=FakeClock(ticks_s[0]))
    collector = GpuCollector(nvml.open_nvml(fake), "sut", monotonic=fake.clock, counter_interval_s=counter_interval_s)
    energy = {}
    for t in ticks_s:
        fake.clock.now = t
        for s in collector.sample(round(t * 1e9)):
            if s.metric == schema.GPU_ENERGY:
                energy[s.ts_ns / 1e9] = s.value
    return energy


def test_the_increase_between_counter_reads_is_shared_out_by_the_trapezoid_of_power():
    # counter read at 10 s and 11 s, power alone at 10.5 s; 100 W until 10.5 s, 300 W from then on.
    # Counter: 1000 J + ∫ = 1000 + 100 × 10 = 2000 J at 10 s, + 100 × 0.5 + 300 × 0.5 = 2200 J at 11 s.
    # Power read at instants: 100, 300, 300 W. Trapezoids: (100 + 300) / 2 × 0.5 = 100 and (300 + 300) / 2 × 0.5
    # = 150, so the tick at 10.5 s gets 100 / 250 of the 200 J: 2080 J.
    got = shaped_energy([Step(0.0, 100.0), Step(10.5, 300.0)], [10.0, 10.5, 11.0])
    assert got == pytest.approx({10.0: 2000.0, 10.5: 2080.0, 11.0: 2200.0}, abs=1e-6)


def test_a_counter_that_starts_near_0_j_is_shaped_too():
    # a freshly loaded driver: the counter reads 0 J at 0 s, fewer joules than the GPU draws watts. 300 W until
    # 0.25 s, 10 W after: 75 + 7.5 = 82.5 J at 1 s. Power at the ticks 300, 10, 10 W: trapezoids (300 + 10) / 2 ×
    # 0.5 = 77.5 and (10 + 10) / 2 × 0.5 = 5, so the tick at 0.5 s gets 77.5 / 82.5 of the 82.5 J: 77.5 J
    got = shaped_energy([Step(0.0, 300.0), Step(0.25, 10.0)], [0.0, 0.5, 1.0], energy_at_start_j=0)
    assert got == pytest.approx({0.0: 0.0, 0.5: 77.5, 1.0: 82.5}, abs=1e-6)


def test_with_power_zero_at_every_reading_the_increase_is_shared_out_by_time():
    # counter read every 0.5 s; a 500 W burst from 10.05 to 10.1 s between the power readings (at 10, 10.125 and
    # 10.5 s, all 0 W): the counter still counts it, 2000 J at 10 s (1000 J + 100 W × 10 s before), 2025 J at
    # 10.5 s; shared out by time, the tick at 10.125 s gets 0.125 s / 0.5 s of the 25 J: 2006.25 J
    got = shaped_energy([Step(0.0, 100.0), Step(10.0, 0.0), Step(10.05, 500.0), Step(10.1, 0.0)],
                        [10.0, 10.125, 10.5], counter_interval_s=0.5)
    assert got == pytest.approx({10.0: 2000.0, 10.125: 2006.25, 10.5: 2025.0}, abs=1e-6)


def test_a_lost_gpu_is_looked_for_again_30_s_later_by_default():
    fake = FakeNvml([FakeGpu(steps=[Step(0.0, 60.0)])], clock=FakeClock(100.0))
    collector = GpuCollector(nvml.open_nvml(fake), "sut", monotonic=fake.clock)
    up = {}
    for t in (100.0, 101.0, 131.0, 132.0):  # lost on the read at 101 s, back on the bus at once
        fake.clock.now = t
        if t == 101.0:
            fake.lose(0)
        up[t] = next(s.value for s in collector.sample(round(t * 1e9)) if s.metric == schema.GPU_UP)
        if t == 101.0:
            fake.recover(0)
    assert up == {100.0: 1.0, 101.0: 0.0, 131.0: 1.0, 132.0: 1.0}  # looked for again at 101 + 30 s


def test_a_negative_gpu_index_is_refused_not_taken_from_the_end():
    fake = FakeNvml([FakeGpu(steps=[Step(0.0, 60.0)]), FakeGpu(steps=[Step(0.0, 60.0)], uuid="GPU-1")])
    with pytest.raises(nvml.NvmlError, match=r"no GPU with index -1: NVML sees 2 GPU\(s\)"):
        GpuCollector(nvml.open_nvml(fake), "sut", indices=[-1])
