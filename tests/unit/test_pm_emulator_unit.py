"""Power profiles (exact integrals, spec parsing) and the emulators' fault settings (the WT300 emulator's protocol on
a real pty: tests/integration/test_pm_emulator.py)."""

from __future__ import annotations

import pytest

from mltelemetry.errors import MltelemetryError
from mltelemetry.exporters.pm.emulator import (
    CpuProfile,
    Faults,
    csv_profile,
    parse_profile,
    steps_profile,
)
from mltelemetry.exporters.pm.wt300_emulator import Wt300Emulator


# --- profiles ------------------------------------------------------------------------------
def test_constant_profile():
    profile = parse_profile("constant:120")
    assert profile.energy(0, 10) == pytest.approx(1200)
    assert profile.energy(3.3, 3.8) == pytest.approx(60)


def test_steps_profile_integrates_across_cycles():
    profile = parse_profile("steps:100/2,300/1")  # 3 s cycle, 500 J per cycle
    assert profile.power(0.5) == 100 and profile.power(2.5) == 300 and profile.power(3.5) == 100
    # [1,2]: 100 J, [2,3]: 300 J, [3,6]: one cycle, [6,7.5]: 150 J
    assert profile.energy(1, 7.5) == pytest.approx(1050)
    assert profile.energy(3000, 3003) == pytest.approx(500)


def test_csv_profile_is_piecewise_linear_and_loops(tmp_path):
    path = tmp_path / "ramp.csv"
    path.write_text("seconds,watts\n# a ramp from 0 to 100 W over 10 s\n0,0\n10,100\n")
    profile = parse_profile(f"csv:{path}")
    assert profile.power(5) == pytest.approx(50)
    assert profile.energy(0, 10) == pytest.approx(500)
    assert profile.energy(2, 4) == pytest.approx(60)  # ∫ 10 t dt from 2 to 4
    assert profile.energy(10, 12) == pytest.approx(20)  # looped: back to 0 W at t = 10
    assert profile.energy(8, 12) == pytest.approx(180 + 20)


def test_csv_profile_starts_at_its_first_row(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("100,50\n101,50\n102,150\n")
    profile = csv_profile(path)
    assert profile.period_s == 2
    assert profile.energy(0, 2) == pytest.approx(50 + 100)


@pytest.mark.parametrize("spec", [
    "", "watts:5", "constant:abc", "constant:-5", "constant:nan", "steps:", "steps:100", "steps:100/0",
    "steps:100/2,x/1", "csv:/nonexistent/profile.csv", "cpu:10", "cpu:a,b",
])
def test_bad_profile_specs(spec):
    with pytest.raises(MltelemetryError, match="profile"):
        parse_profile(spec)


@pytest.mark.parametrize("content", ["0,10\n", "0,10\n0,20\n", "0,10\n1,abc\n", "0,10\n1,-5\n"])
def test_bad_csv_profiles(tmp_path, content):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(MltelemetryError, match="bad profile"):
        parse_profile(f"csv:{path}")


# --- faults --------------------------------------------------------------------------------
def test_faults_are_seeded_and_counted():
    a = Faults(0.1, 0.1, 0.2, seed=5)
    b = Faults(0.1, 0.1, 0.2, seed=5)
    kinds = [a.next() for _ in range(1000)]
    assert kinds == [b.next() for _ in range(1000)]
    assert sum(k is not None for k in kinds) == sum(a.counts.values())
    assert 300 < sum(a.counts.values()) < 500  # 40 % of 1000
    assert set(a.counts) == {"garbage", "partial", "nan", "inf", "overrange"}


def test_injected_faults_come_first():
    faults = Faults()
    faults.inject("nan", count=2)
    faults.inject("partial")
    assert [faults.next() for _ in range(4)] == ["nan", "nan", "partial", None]


def test_bad_fault_rates():
    with pytest.raises(MltelemetryError):
        Faults(garbage_rate=0.7, nan_rate=0.5)
    with pytest.raises(ValueError):
        Faults().inject("smoke")


def test_refuses_to_replace_a_regular_file(tmp_path):
    path = tmp_path / "not-a-link"
    path.write_text("keep me")
    emulator = Wt300Emulator(steps_profile([(10, 1)]), path)
    with pytest.raises(MltelemetryError, match="not a symlink"):
        emulator.start()
    emulator.close()
    assert path.read_text() == "keep me"


# --- shared machinery: fault kinds per protocol, the TCP cable, the shifted clock ------------------
def test_fault_rates_of_the_binary_and_ptd_kinds():
    faults = Faults(checksum_rate=0.2, nak_rate=0.2, error_rate=0.2, seed=1)
    kinds = [faults.next() for _ in range(2000)]
    assert {"checksum", "nak", "csfail", "error"} == set(faults.counts)
    assert 1000 < sum(k is not None for k in kinds) < 1400  # 60 % of 2000
    assert faults.rated_kinds() == {"checksum", "nak", "csfail", "error"}
    assert Faults(nan_rate=0.5, markers=("nan",)).rated_kinds() == {"nan"}


def test_emulators_refuse_faults_their_protocol_lacks(tmp_path):
    with pytest.raises(MltelemetryError, match="Wt300Emulator cannot inject checksum"):
        Wt300Emulator(steps_profile([(10, 1)]), tmp_path / "wt", faults=Faults(checksum_rate=0.1))
    emulator = Wt300Emulator(steps_profile([(10, 1)]), tmp_path / "wt")
    with pytest.raises(ValueError, match="no fault 'nak'"):
        emulator.inject("nak")
    emulator.close()


def test_cpu_profile_follows_a_shifted_clock_from_its_record():
    readings = iter([0.0, 50.0, 100.0, 0.0])
    profile = CpuProfile(10.0, 100.0, cpu_percent=lambda: next(readings))
    profile.advance(1.0)  # 50 % over [0, 1]
    profile.advance(2.0)  # 100 % over [1, 2]
    assert profile.energy(0.5, 1.5) == pytest.approx(0.5 * 60 + 0.5 * 110)  # from the record: no new measurement

