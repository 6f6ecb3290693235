"""CLEAR MOT and IDF1 (csrseg.tracking.metrics) on hand-made frames whose scores are known."""

import pytest

from csrseg.tracking.metrics import mot_metrics

A, B = (0, 0, 9, 9), (50, 0, 59, 9)


def test_perfect_tracks_score_one():
    frames = [{1: A, 2: B}] * 4
    m = mot_metrics(frames, [{7: A, 8: B}] * 4)
    assert (m.switches, m.misses, m.false_positives, m.mota, m.idf1) == (0, 0, 0, 1.0, 1.0)


def test_swapped_identities_count_two_switches_and_halve_idf1():
    truth = [{1: A, 2: B}] * 4
    tracked = [{7: A, 8: B}] * 2 + [{8: A, 7: B}] * 2  # the tracker swaps its two ids at frame 2
    m = mot_metrics(truth, tracked)
    assert m.switches == 2 and m.mota == pytest.approx(1 - 2 / 8)
    assert m.idtp == 4 and m.idf1 == pytest.approx(2 * 4 / 16)


def test_misses_false_positives_and_a_correspondence_kept_through_a_gap():
    truth = [{1: A}, {1: A}, {1: A}]
    tracked = [{7: A}, {}, {7: A, 9: B}]  # missed once, found again by the same id; a stray box
    m = mot_metrics(truth, tracked)
    assert (m.misses, m.false_positives, m.switches) == (1, 1, 0)
    assert m.mota == pytest.approx(1 - 2 / 3) and m.idf1 == pytest.approx(2 * 2 / 6)


def test_a_box_under_half_iou_is_a_miss_and_a_false_positive():
    m = mot_metrics([{1: A}], [{7: (5, 0, 14, 9)}])  # IoU 50/150
    assert (m.misses, m.false_positives) == (1, 1)
