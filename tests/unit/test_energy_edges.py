"""Edges of the energy arithmetic (analysis/energy.py) that mutation testing found unchecked (bench/mutation.md).

Each test works a small series by hand; the comments carry the arithmetic.
"""

import numpy as np
import pytest

from mltelemetry.analysis.energy import (
    coverages,
    increases,
    integral_counter,
    monotonic,
    sampling_interval_ns,
    window_means,
)

S = 10**9


def test_an_edge_inside_a_long_gap_gives_no_figure_and_one_on_either_side_of_it_does():
    # samples at 0, 1, 10, 11 s: the 9-s interval from 1 to 10 s is longer than the 3-s limit
    ts = np.array([0, 1, 10, 11]) * S
    counter = np.array([0.0, 100.0, 1000.0, 1100.0])
    starts = np.array([int(0.5 * S), int(0.5 * S), 5 * S, 1 * S])
    ends = np.array([int(10.5 * S), 5 * S, int(10.5 * S), 10 * S])
    got = increases(ts, counter, starts, ends, max_gap_ns=3 * S)
    assert got[0] == pytest.approx(1050.0 - 50.0)  # 0.5 s: 0 + 0.5 × 100 = 50; 10.5 s: 1000 + 0.5 × 100 = 1050
    assert np.isnan(got[1])  # ends at 5 s, inside the gap: how its energy spread is unknown
    assert np.isnan(got[2])  # starts inside the gap
    assert got[3] == pytest.approx(900.0)  # both edges on the samples either side of the gap: 1000 − 100


def test_a_window_from_the_first_sample_across_a_long_gap_holds_the_whole_gap_and_is_exact():
    # samples at 0, 9, 10 s, the first interval 9 s long (limit 3 s), no drop of the counter across it: the
    # counter integrated through the gap at the source, so a window holding all of it is exact
    ts = np.array([0, 9, 10]) * S
    counter = np.array([0.0, 900.0, 1000.0])
    got = increases(ts, counter, np.array([0, 0]), np.array([10 * S, 9 * S]), max_gap_ns=3 * S)
    assert got.tolist() == pytest.approx([1000.0, 900.0])  # 1000 − 0; 900 − 0


def test_a_series_of_two_samples_far_apart_gives_no_figure_for_an_edge_between_them():
    ts = np.array([0, 10]) * S  # one 10-s interval, limit 3 s
    counter = np.array([0.0, 1000.0])
    got = increases(ts, counter, np.array([2 * S, 0]), np.array([8 * S, 10 * S]), max_gap_ns=3 * S)
    assert np.isnan(got[0])  # both edges inside the gap
    assert got[1] == pytest.approx(1000.0)  # the whole gap: exact


def test_a_drop_of_the_counter_across_a_long_gap_voids_exactly_the_windows_holding_that_gap():
    # samples at 0, 1, 2, 12, 13, 14 s; across the 10-s interval from 2 to 12 s the counter drops from 200 to 50:
    # the exporter restarted while no one read it, so what it counted before restarting is lost
    ts = np.array([0, 1, 2, 12, 13, 14]) * S
    counter = np.array([0.0, 100.0, 200.0, 50.0, 150.0, 250.0])
    starts = np.array([int(1.5 * S), int(12.5 * S), 0, 2 * S])
    ends = np.array([int(12.5 * S), int(13.5 * S), 2 * S, 12 * S])
    got = increases(ts, counter, starts, ends, max_gap_ns=3 * S)
    assert np.isnan(got[0])  # from 1.5 s (inside the interval 1–2 s) to 12.5 s: holds the gap
    assert got[1] == pytest.approx(100.0)  # 12.5 to 13.5 s, after the gap: the counter made monotonic reads
    # 250, 350 at 12, 13 s and 450 at 14 s, so 300 at 12.5 s and 400 at 13.5 s: 100
    assert got[2] == pytest.approx(200.0)  # 0 to 2 s, ends where the gap starts: 200 − 0
    assert np.isnan(got[3])  # exactly the gap, edges on its samples: the counter dropped inside it


def test_a_two_sample_counter_that_dropped_across_a_long_gap_gives_no_figure():
    ts = np.array([0, 10]) * S
    counter = np.array([500.0, 100.0])  # restarted somewhere in the 10 s (limit 3 s)
    assert np.isnan(increases(ts, counter, np.array([0]), np.array([10 * S]), max_gap_ns=3 * S)[0])


def test_power_integrated_into_a_counter_adds_nothing_over_a_long_gap():
    # power 100 W at 0 and 1 s, then nothing until 10 s (limit 3 s), then 200 W at 10 and 11 s
    ts = np.array([0, 1, 10, 11]) * S
    power = np.array([100.0, 100.0, 200.0, 200.0])
    got = integral_counter(ts, power, max_gap_ns=3 * S)
    # 0; + (100 + 100) / 2 × 1 s = 100 J; + 0 for the gap; + (200 + 200) / 2 × 1 s = 200 J → 300 J
    assert got.tolist() == pytest.approx([0.0, 100.0, 100.0, 300.0])


def test_a_window_holding_one_sample_has_that_sample_as_its_mean():
    ts = np.array([0, 1, 2]) * S
    values = np.array([10.0, 20.0, 60.0])
    got = window_means(ts, values, np.array([int(0.5 * S), int(0.5 * S), int(2.5 * S)]),
                       np.array([int(1.5 * S), int(2.5 * S), 3 * S]))
    assert got[0] == 20.0  # only the sample at 1 s
    assert got[1] == pytest.approx(40.0)  # (20 + 60) / 2
    assert np.isnan(got[2])  # no sample: no mean, never a padded one


def test_the_sampling_interval_of_a_series_too_short_to_tell_is_exactly_one_second():
    # the coverage of a window counts floor(duration / interval) expected samples: 10 s / 1 s = 10 exactly,
    # and 10 s / (1 s + 1 ns) would be 9
    assert sampling_interval_ns(np.array([5 * S])) == 1e9
    assert sampling_interval_ns(np.array([], dtype=np.int64)) == 1e9
    assert sampling_interval_ns(np.array([0, 2, 4, 7]) * S) == 2e9  # the median spacing of 2, 2 and 3 s


def test_an_edge_in_the_last_interval_is_judged_by_that_interval_not_the_one_before():
    # samples at 0, 10, 11 s: the first interval (10 s) is longer than the 3-s limit, the last (1 s) is not
    ts = np.array([0, 10, 11]) * S
    counter = np.array([0.0, 1000.0, 1100.0])
    got = increases(ts, counter, np.array([int(10.2 * S)]), np.array([int(10.8 * S)]), max_gap_ns=3 * S)
    assert got[0] == pytest.approx(60.0)  # 1000 + 0.8 × 100 − (1000 + 0.2 × 100) = 1080 − 1020


def test_a_window_of_no_length_on_a_sample_has_no_energy_even_on_the_last_or_only_sample():
    # a scenario's cleanup that took no time is such a window: 0 J, not "no figure"
    ts = np.array([0, 1, 2]) * S
    counter = np.array([0.0, 100.0, 200.0])
    got = increases(ts, counter, np.array([2 * S, 1 * S]), np.array([2 * S, 1 * S]), max_gap_ns=3 * S)
    assert got.tolist() == [0.0, 0.0]  # at the last sample and at the middle one
    only = increases(np.array([5 * S]), np.array([42.0]), np.array([5 * S]), np.array([5 * S]), max_gap_ns=3 * S)
    assert only.tolist() == [0.0]  # a series of one sample: the window on it


def test_power_of_two_samples_is_integrated_by_the_trapezoid():
    got = integral_counter(np.array([0, 2]) * S, np.array([100.0, 300.0]), max_gap_ns=3 * S)
    assert got.tolist() == [0.0, 400.0]  # (100 + 300) / 2 W × 2 s


def test_a_window_of_exactly_one_interval_without_a_sample_has_no_coverage():
    ts = np.array([0, 3]) * S  # nothing between 0 and 3 s
    # [1, 2] s expects floor(1 s / 1 s) = 1 sample and holds none: 0; [1, 1.5] s expects none: 1 (the edges carry it)
    got = coverages(ts, np.array([1 * S, 1 * S]), np.array([2 * S, int(1.5 * S)]), 1e9)
    assert got.tolist() == [0.0, 1.0]


def test_the_sampling_interval_of_two_samples_is_their_spacing():
    assert sampling_interval_ns(np.array([0, 2]) * S) == 2e9


def test_a_reset_between_two_samples_is_undone_too():
    assert monotonic(np.array([100.0, 50.0])).tolist() == [100.0, 150.0]  # 50 counted since the restart


def test_a_series_without_samples_gives_no_figure():
    got = increases(np.array([], np.int64), np.array([]), np.array([0, S]), np.array([S, 2 * S]), max_gap_ns=3 * S)
    assert np.isnan(got).all() and len(got) == 2


def test_a_counter_that_stands_still_across_a_long_gap_did_not_restart():
    # 0 W across the 10-s gap (a machine switched off while the exporter was away): the window is exact, 0 J
    ts = np.array([0, 1, 11, 12]) * S
    counter = np.array([0.0, 50.0, 50.0, 60.0])
    got = increases(ts, counter, np.array([0]), np.array([12 * S]), max_gap_ns=3 * S)
    assert got[0] == pytest.approx(60.0)
