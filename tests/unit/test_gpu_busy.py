"""GPU load as a counter: busy seconds summed at every tick, so a window's mean load survives a sparse scrape."""

import pytest

from fakes.fake_nvml import FakeClock, FakeGpu, FakeNvml, Step
from mltelemetry import schema
from mltelemetry.analysis.campaign import analyze_campaign
from mltelemetry.exporters.gpu import nvml
from mltelemetry.exporters.gpu.collector import GpuCollector
from mltelemetry.schema import Event
from mltelemetry.store import Store

S = 10**9


def scraped_every_15_s(path, lose_at: float | None = None) -> FakeNvml:
    """The exporter reads the GPU every second for 60 s, but only every 15th tick is kept (a Prometheus scraping
    every 15 s). Load: 30 % until t = 30.5 s, then 90 % (each reading reports the step holding at its time)."""
    clock = FakeClock(0.0)
    fake = FakeNvml([FakeGpu(steps=[Step(0.0, 100.0, utilization_pct=30), Step(30.5, 300.0, utilization_pct=90)])],
                    clock=clock)
    collector = GpuCollector(nvml.open_nvml(fake), "sut", monotonic=clock, retry_lost_s=1.0)
    kept = []
    for t in range(61):
        clock.now = float(t)
        if lose_at is not None and t == lose_at:
            fake.lose(0)
        if lose_at is not None and t == lose_at + 5:
            fake.recover(0, reload_driver=False)
        samples = collector.sample(t * S)
        if t % 15 == 0:
            kept += samples
    events = [Event("c", "g", 1, "run", 0, 60 * S), Event("c", "g", 1, "first", 0, 30 * S),
              Event("c", "g", 1, "second", 30 * S, 60 * S), Event("c", "g", 1, "middle", 15 * S, 45 * S)]
    with Store(path) as store:
        store.write(kept)
        store.write_events(events)
    return fake


def busy_at(path, t: int) -> float:
    with Store(path) as store:
        frame = store.query(schema.GPU_BUSY_SECONDS)
    return float(frame[frame.ts_ns == t * S].value.iloc[0])


def test_a_windows_gpu_load_comes_from_the_busy_counter_whatever_the_scrape_interval(tmp_path):
    scraped_every_15_s(tmp_path / "s.db")
    # readings at t = 1..30 add 0.3 s each, t = 31..60 add 0.9 s each
    assert busy_at(tmp_path / "s.db", 30) == pytest.approx(30 * 0.3)
    assert busy_at(tmp_path / "s.db", 60) == pytest.approx(30 * 0.3 + 30 * 0.9)
    with Store(tmp_path / "s.db") as store:
        windows = analyze_campaign(store, "c").windows.set_index("action")
    assert windows.loc["first", "gpu_utilization"] == pytest.approx(9.0 / 30)  # 0.30
    assert windows.loc["second", "gpu_utilization"] == pytest.approx(27.0 / 30)  # 0.90
    assert windows.loc["run", "gpu_utilization"] == pytest.approx(36.0 / 60)  # 0.60
    # [15, 45]: busy(45) − busy(15) = (9 + 15 × 0.9) − 15 × 0.3 = 18 s of 30; the three scraped readings inside
    # (0.3 at 15 and 30, 0.9 at 45) would say 0.5
    assert windows.loc["middle", "gpu_utilization"] == pytest.approx(18.0 / 30)


def test_the_time_a_gpu_was_lost_is_not_counted_as_busy(tmp_path):
    scraped_every_15_s(tmp_path / "s.db", lose_at=40)
    # readings 31..39 add 0.9 s each; lost at t = 40..44 (no reading); the reading at 45 only restarts the count;
    # 46..60 add 0.9 s each
    assert busy_at(tmp_path / "s.db", 60) == pytest.approx(30 * 0.3 + 9 * 0.9 + 15 * 0.9)


def test_the_gauge_stays_the_fallback_without_the_counter(tmp_path):
    scraped_every_15_s(tmp_path / "s.db")
    with Store(tmp_path / "s.db") as store:
        store._db.execute("DELETE FROM series WHERE metric = ?", (schema.GPU_BUSY_SECONDS,))  # data from before
        windows = analyze_campaign(store, "c").windows.set_index("action")
    assert windows.loc["middle", "gpu_utilization"] == pytest.approx((0.3 + 0.3 + 0.9) / 3)  # the readings at 15/30/45


def test_busy_seconds_count_when_utilisation_is_read_slower_than_the_ticks():
    """Seen on an H200 at --interval 0.1 (utilisation read once a second with the slow indicators): the counter
    stayed at 0 s through a 100 % load, because each tick without a utilisation reading restarted the count."""
    clock = FakeClock(0.0)
    fake = FakeNvml([FakeGpu(steps=[Step(0.0, 300.0, utilization_pct=100)])], clock=clock)
    collector = GpuCollector(nvml.open_nvml(fake), "sut", monotonic=clock, gauges_interval_s=1.0)
    busy = []
    for k in range(31):  # 0.0 .. 3.0 s every 0.1 s
        clock.now = k / 10
        busy += [s.value for s in collector.sample(k * S // 10) if s.metric == schema.GPU_BUSY_SECONDS]
    # read at 0, 1, 2 and 3 s: 0, then 1 s of full load between each pair of readings
    assert busy == pytest.approx([0.0, 1.0, 2.0, 3.0])
