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
    for axis in (0, 1, 2):  # no unit, step or row favoured: each rate within 6 standard deviations
        rates = kept.mean(axis=tuple(a for a in range(3) if a != axis))
        sd = np.sqrt(p * (1 - p) * kept.shape[axis] / kept.size)
        assert np.all(np.abs(rates - (1 - p)) < 6 * sd), (axis, rates.min(), rates.max())
    # a row's numbers run in C order over (H, T): neighbours along T share a 64-bit draw 3 times in 4,
    # and must agree only as often as independent units do
    same = np.mean(kept[:, :-1] == kept[:, 1:])
    assert abs(same - ((1 - p) ** 2 + p**2)) < 0.01


def test_the_masks_are_the_documented_philox_numbers():
    """The scheme a checkpoint names ("philox-per-row-u16"), derived by hand: row r's stream at step s,
    draw d is Philox(key=[seed, r], counter=[0, 0, d, s]); each 64-bit output gives four 16-bit
    numbers, low bits first, to the units in C order; kept when ≥ the threshold."""
    seed, row0, step, p, lead, b = 11, 3, 7, 0.25, (5, 3), 2  # 15 units a row: not a multiple of 4
    s = RowStreams(seed, row0).at(step)
    s.keep((*lead, b), 0.5)  # draw 0
    got = s.keep((*lead, b), p)  # draw 1
    for j in range(b):
        bits = np.random.Philox(key=np.array([seed, row0 + j], dtype=np.uint64),
                                counter=np.array([0, 0, 1, step], dtype=np.uint64))
        words = [int(w) for w in bits.random_raw(4)]
        numbers = [(w >> (16 * k)) & 0xFFFF for w in words for k in range(4)][:15]
        want = np.array([n >= threshold(p) for n in numbers]).reshape(lead)
        np.testing.assert_array_equal(got[..., j], want)


def test_the_drop_level_is_p_to_16_bits_and_the_scale_undoes_the_keep_probability_exactly():
    for p in (0.0, 0.1, 0.25, 0.5, 0.9, 0.99999):
        t = threshold(p)
        assert abs(t / 65536 - p) <= 0.5 / 65536 + 1e-12 and 0 <= t < 65536
        assert keep_scale(p) * (65536 - t) / 65536 == pytest.approx(1.0, rel=1e-15)
    assert threshold(0.9999999) == 65535 and keep_scale(0.9999999) == 65536.0  # capped: one level kept
    assert np.all(RowStreams(1, 0).at(0).keep((10, 3), 0.0))  # p = 0 keeps everything


def test_a_mask_is_the_kept_units_times_the_scale_in_the_model_dtype():
    for dtype in (np.float32, np.float64):
        m = dropout_mask(RowStreams(5, 2).at(1), (6, 7, 3), 0.2, dtype)
        kept = RowStreams(5, 2).at(1).keep((6, 7, 3), 0.2)
        assert m.dtype == dtype
        np.testing.assert_array_equal(m, kept.astype(dtype) * dtype(keep_scale(0.2)))
        # a plain numpy Generator (tests, the API): bit for bit what it always gave
        g = dropout_mask(np.random.default_rng(0), (6, 7, 3), 0.2, dtype)
        old = (np.random.default_rng(0).random((6, 7, 3), dtype=dtype) >= 0.2).astype(dtype) * dtype(1.0 / 0.8)
        assert g.dtype == dtype and g.tobytes() == old.tobytes()
