"""Dropout randomness (``lstmgen.dropout.RowStreams``): a row's masks depend only on the seed, the
step, the draw and the row's global index — so workers that split a batch's rows draw exactly the
masks one process draws, and a resumed run needs no generator state."""

import numpy as np
import pytest

from lstmgen.dropout import RowStreams, keep_scale, threshold
from lstmgen.networks.layers import dropout_mask


def test_a_row_block_draws_the_columns_the_whole_batch_draws():
    whole = RowStreams(7, 0).at(5)
    a, b = whole.keep((3, 4, 6), 0.5), whole.keep((2, 6), 0.5)
    left, right = RowStreams(7, 0).at(5), RowStreams(7, 4).at(5)  # rows 0-3 and 4-5, as two workers
    np.testing.assert_array_equal(np.concatenate([left.keep((3, 4, 4), 0.5), right.keep((3, 4, 2), 0.5)], axis=-1), a)
    np.testing.assert_array_equal(np.concatenate([left.keep((2, 4), 0.5), right.keep((2, 2), 0.5)], axis=-1), b)


def test_the_step_and_the_draw_pick_the_stream_and_nothing_else_is_remembered():
    s = RowStreams(1, 0)
    first = s.at(3).keep((50, 2), 0.5)
    s.at(9).keep((50, 2), 0.5)  # other steps in between change nothing
    np.testing.assert_array_equal(s.at(3).keep((50, 2), 0.5), first)
    assert not np.array_equal(s.at(4).keep((50, 2), 0.5), first)
    s.at(3).keep((50, 2), 0.5)
    assert not np.array_equal(s.keep((50, 2), 0.5), first)  # the second draw of a step is another one
    assert not np.array_equal(RowStreams(2, 0).at(3).keep((50, 2), 0.5), first)  # and another seed


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_units_are_kept_with_probability_one_minus_p_independently_of_position(p):
    kept = RowStreams(3, 0).at(0).keep((400, 50, 8), p)  # 160,000 units
    assert kept.dtype == bool and kept.shape == (400, 50, 8)
    assert abs(float(kept.mean()) - (1 - p)) < 0.005  # ~4 standard deviations
    for axis in (0, 1, 2):  # no row, step or unit favoured
        rates = kept.mean(axis=tuple(a for a in range(3) if a != axis))
        assert np.all(np.abs(rates - (1 - p)) < 0.12), (axis, rates.min(), rates.max())
    neighbours = np.mean(kept[:-1] == kept[1:])  # the four units of one 64-bit draw are not alike
    assert abs(neighbours - ((1 - p) ** 2 + p**2)) < 0.01


def test_the_drop_level_is_p_to_16_bits_and_the_scale_undoes_the_keep_probability_exactly():
    for p in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99999):
        t = threshold(p)
        assert abs(t / 65536 - p) <= 0.5 / 65536 + 1e-12 and 0 <= t < 65536
        assert keep_scale(p) * (65536 - t) / 65536 == pytest.approx(1.0, rel=1e-15)
    assert np.all(RowStreams(1, 0).at(0).keep((10, 3), 0.0))  # p = 0 keeps everything


def test_a_mask_is_the_kept_units_times_the_scale_in_the_model_dtype():
    for dtype in (np.float32, np.float64):
        m = dropout_mask(RowStreams(5, 2).at(1), (6, 7, 3), 0.2, dtype)
        kept = RowStreams(5, 2).at(1).keep((6, 7, 3), 0.2)
        assert m.dtype == dtype
        np.testing.assert_array_equal(m, kept.astype(dtype) * dtype(keep_scale(0.2)))
    g = dropout_mask(np.random.default_rng(0), (6, 7, 3), 0.2, np.float64)  # a plain Generator: as before
    assert set(np.unique(g)) <= {0.0, 1.0 / 0.8}
