"""Annotator windows that measure their GPU energy in-process, at their edges (as Zeus does), on the fake NVML."""

import numpy as np
import pytest

from fakes.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step
from mltelemetry.analysis.energy import increases
from mltelemetry.errors import MltelemetryError
from mltelemetry.store import Store
from mltelemetry.workload.events import EventRecorder
from mltelemetry.workload.instrument import Annotator

UUID1 = "GPU-11111111-1111-1111-1111-111111111111"


def two_gpus(clock: FakeClock) -> FakeNvml:
    """GPU 0: 100 W, 400 W from t = 10.1 s to 10.3 s, then 100 W again; GPU 1: 50 W throughout."""
    return FakeNvml([FakeGpu(steps=[Step(0, 100.0), Step(10.1, 400.0), Step(10.3, 100.0)]),
                     FakeGpu(steps=[Step(0, 50.0)], uuid=UUID1)], clock=clock)


def test_a_short_window_returns_its_exact_gpu_energy_and_records_it(tmp_path):
    clock = FakeClock(10.0)
    fake = two_gpus(clock)
    with Store(tmp_path / "s.db") as store:
        recorder = EventRecorder(store, "c", clock=lambda: round(clock() * 1e9))
        with Annotator(recorder, scenario="mine", gpu_energy=True, nvml=fake) as ann:
            clock.advance(0.05)
            with ann.window("step") as step:  # from t = 10.05 s to 10.25 s
                clock.advance(0.2)
        [event] = store.events("c")
    # GPU 0: 0.05 s at 100 W + 0.15 s at 400 W = 5 + 60 = 65 J; GPU 1: 0.2 s at 50 W = 10 J
    assert step["gpu0_energy_joules"] == pytest.approx(65.0, abs=1e-3)  # NVML counts millijoules
    assert step["gpu1_energy_joules"] == pytest.approx(10.0, abs=1e-3)
    assert step["gpu_energy_joules"] == pytest.approx(75.0, abs=2e-3)
    assert event.fields["gpu_energy_joules"] == step["gpu_energy_joules"]
    assert (event.start_ns, event.end_ns) == (10_050_000_000, 10_250_000_000)
    # what 1-s samples of the same counter give the window by interpolation: E(10 s) = 0 + 1000 J, E(11 s) =
    # 1000 + 0.1 × 100 + 0.2 × 400 + 0.7 × 100 = 1160 J, so 0.2 s × 160 W = 32 J: half the truth
    sampled = increases(np.array([10, 11]) * 10**9, np.array([1000.0, 1160.0]), np.array([event.start_ns]),
                        np.array([event.end_ns]))
    assert sampled[0] == pytest.approx(32.0)


def test_nested_windows_each_measure_their_own_span(tmp_path):
    clock = FakeClock(0.0)
    with Annotator(tmp_path / "s.db", campaign="c", gpu_energy=True, gpus=[1], nvml=two_gpus(clock)) as ann:
        with ann.window("train") as train:
            clock.advance(1.0)
            with ann.epoch(1) as epoch:
                clock.advance(2.0)
            clock.advance(0.5)
    assert epoch["gpu_energy_joules"] == pytest.approx(2.0 * 50)  # GPU 1 only: 2 s at 50 W
    assert train["gpu_energy_joules"] == pytest.approx(3.5 * 50)
    assert "gpu0_energy_joules" not in train


def test_no_nvml_is_one_clear_error_and_a_lost_gpu_leaves_the_figure_out(tmp_path, caplog):
    with pytest.raises(MltelemetryError, match="NVML library .* not found"):
        Annotator(tmp_path / "s.db", campaign="c", gpu_energy=True, nvml=FakeNvml([], library_missing=True))
    assert not (tmp_path / "s.db").exists()  # refused before anything was opened
    clock = FakeClock(0.0)
    fake = two_gpus(clock)
    with Annotator(tmp_path / "s.db", campaign="c", gpu_energy=True, nvml=fake) as ann:
        with ann.window("step") as step:
            clock.advance(1.0)
            fake.lose(0)
        with Store(tmp_path / "s.db") as store:
            [event] = store.events("c")
    assert "gpu_energy_joules" not in step and event.status == "ok"  # the training went on, no number made up
    assert "GPU energy not measured for this window" in caplog.text


def test_without_gpu_energy_nvml_is_never_touched(tmp_path):
    fake = two_gpus(FakeClock(0.0))
    with Annotator(tmp_path / "s.db", campaign="c", nvml=fake) as ann:
        with ann.window("step") as step:
            pass
    assert step == {} and sum(fake.calls.values()) == 0
