"""Dropout randomness (``lstmgen.dropout.RowStreams``): a row's masks depend only on the seed, the
step, the draw and the row's global index — so workers that split a batch's rows draw exactly the
masks one process draws, and a resumed run needs no generator state."""

import numpy as np

from lstmgen.dropout import RowStreams


def test_a_row_block_draws_the_columns_the_whole_batch_draws():
    whole = RowStreams(7, 0).at(5)
    a, b = whole.random((3, 4, 6), np.float32), whole.random((2, 6), np.float32)
    left, right = RowStreams(7, 0).at(5), RowStreams(7, 4).at(5)  # rows 0-3 and 4-5, as two workers
    np.testing.assert_array_equal(np.concatenate([left.random((3, 4, 4), np.float32),
                                                  right.random((3, 4, 2), np.float32)], axis=-1), a)
    np.testing.assert_array_equal(np.concatenate([left.random((2, 4), np.float32),
                                                  right.random((2, 2), np.float32)], axis=-1), b)


def test_the_step_and_the_draw_pick_the_stream_and_nothing_else_is_remembered():
    s = RowStreams(1, 0)
    first = s.at(3).random((5, 2))
    s.at(9).random((5, 2))  # other steps in between change nothing
    np.testing.assert_array_equal(s.at(3).random((5, 2)), first)
    assert not np.array_equal(s.at(4).random((5, 2)), first)
    s.at(3).random((5, 2))
    assert not np.array_equal(s.random((5, 2)), first)  # the second draw of a step is another one
    assert not np.array_equal(RowStreams(2, 0).at(3).random((5, 2)), first)  # and another seed


def test_values_are_uniform_in_0_1():
    v = RowStreams(3, 0).at(0).random((200, 50), np.float32)
    assert v.dtype == np.float32 and 0.0 <= v.min() and v.max() < 1.0
    assert abs(float(v.mean()) - 0.5) < 0.01
