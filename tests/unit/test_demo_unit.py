"""The demo's GPU choice on the fake NVML (the demo end to end as a process: tests/integration/test_demo.py)."""


import pytest

from fakes.fake_nvml import FakeGpu, FakeNvml, Step
from mltelemetry.demo import choose_gpu, demo_plan, exporter_commands


def test_where_nvml_answers_the_demo_runs_the_gpu_exporter_and_trains_on_the_gpu(tmp_path, monkeypatch):
    fake = FakeNvml([FakeGpu(steps=[Step(0, 60.0)]), FakeGpu(steps=[Step(0, 60.0)], uuid="GPU-1")])
    choice = choose_gpu(fake)
    assert choice.gpus == 2 and choice.line.startswith("2 GPU(s) (NVIDIA H100 80GB HBM3): the GPU exporter runs")
    assert not fake.initialised  # NVML shut down again: the exporter opens its own
    commands = exporter_commands(tmp_path / "s.db", tmp_path / "wt310", choice)
    assert list(commands) == ["pm-exporter", "host-exporter", "gpu-exporter"]
    assert commands["gpu-exporter"] == ["exporter", "gpu", "--store", str(tmp_path / "s.db"), "--listen", "off",
                                        "--interval", "1"]
    monkeypatch.setattr("mltelemetry.workload.config.installed_backends", lambda: ["torch"])
    plan = demo_plan(1, 1.0, True, tmp_path, choice)
    assert plan.scenarios[-2:] == ["cnn", "transfer"] and plan.config.device == "cuda"


@pytest.mark.parametrize("fake", [FakeNvml([], library_missing=True), FakeNvml([], driver_not_loaded=True),
                                  FakeNvml([])], ids=["no library", "no driver", "no GPU"])
def test_without_nvml_the_demo_says_so_in_one_line_and_runs_as_before(tmp_path, monkeypatch, fake):
    choice = choose_gpu(fake)
    assert choice.gpus == 0 and choice.line.startswith("no GPU measured") and "\n" not in choice.line
    assert choice.line.endswith("the demo runs on the CPU")
    assert list(exporter_commands(tmp_path / "s.db", tmp_path / "wt310", choice)) == ["pm-exporter", "host-exporter"]
    monkeypatch.setattr("mltelemetry.workload.config.installed_backends", lambda: ["torch"])
    assert demo_plan(1, 1.0, True, tmp_path, choice).config.device == "auto"
