"""Text in and out (``lstmgen.text``): the vocabulary, the held-out split, the batch size that fits,
and the batch streams (state carried along each row; a cloze model's right context)."""

import numpy as np
import pytest

from lstmgen.errors import CorpusError, VocabError
from lstmgen.text import BatchStream, Vocab, fit_batch, split


def test_the_vocabulary_is_sorted_and_names_what_it_lacks():
    v = Vocab.from_text("banana\n")
    assert v.chars == "\nabn" and v.start_id == 0 and v.decode(v.encode("nab")) == "nab"
    with pytest.raises(VocabError, match="does not know: z$"):
        v.encode("zab")
    assert Vocab("abc").start_id == 0  # no newline: the first character


def test_the_held_out_tail_is_the_end_of_the_corpus():
    ids = np.arange(100)
    train, val = split(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    assert len(split(ids, 0.0)[1]) == 0 and len(split(ids, 0.001)[1]) == 2  # at least 2 when asked
    with pytest.raises(CorpusError, match="too small to hold out"):
        split(np.arange(3), 0.5)


def test_a_small_corpus_shrinks_the_batch_and_says_so():
    assert fit_batch(10_000, 32, 100) == (32, 100, [])
    B, T, warnings = fit_batch(200, 32, 100)
    assert B * T <= 199 and warnings and "using batch size" in warnings[0]


def test_each_row_continues_where_it_stopped_and_y_is_x_shifted():
    ids = np.arange(1, 122)  # 121 ids: B = 3 rows of 40, T = 8: 5 batches an epoch
    s = BatchStream(ids, 3, 8)
    assert (s.per_row, s.batches_per_epoch) == (40, 5)
    x0, y0 = s.get(0)
    x1, _ = s.get(1)
    assert x0.shape == (3, 8) and (y0 == x0 + 1).all()
    assert (x1[:, 0] == x0[:, -1] + 1).all()  # row b of batch 1 continues row b of batch 0
    assert x0[:, 0].tolist() == [1, 41, 81]
    x, right = s.get_with_right(4, 8)  # the last batch: W shrinks to what every row has after it
    np.testing.assert_array_equal(x, s.get(4)[0])
    assert right.shape[1] <= 8 and (right[:, 0] == x[:, -1] + 1).all()
