"""The streamed, chunked corpus encoder and its memory-mapped cache."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmgen import corpus as corpus_mod
from lstmgen.corpus import id_dtype, load_corpus
from lstmgen.errors import CorpusError, LstmgenError, VocabError
from lstmgen.synthetic import prose
from lstmgen.text import Vocab, decode_bytes, read_text
from lstmgen.training import TrainOptions, new_trainer, resume_trainer


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=80), bom=st.booleans(), chunk=st.integers(1, 9))
def test_chunked_encoding_equals_whole_text(tmp_path, monkeypatch, text, bom, chunk):
    """Multi-byte characters and the BOM split across chunk boundaries decode as one piece."""
    monkeypatch.setattr(corpus_mod, "CHUNK", chunk)
    p = tmp_path / "c.txt"
    p.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    expect = decode_bytes(p.read_bytes())
    if not expect:
        with pytest.raises(CorpusError, match="empty"):
            load_corpus(p)
        return
    c = load_corpus(p)
    v = Vocab.from_text(expect)
    assert c.vocab.chars == v.chars and c.n_chars == len(expect)
    np.testing.assert_array_equal(c.ids, v.encode(expect))
    assert c.ids.dtype == id_dtype(len(v))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.text(max_size=30), bad=st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80"]),
       tail=st.text(max_size=10), chunk=st.integers(1, 9))
def test_bad_utf8_offset_matches_the_whole_file_decoder(tmp_path, monkeypatch, good, bad, tail, chunk):
    monkeypatch.setattr(corpus_mod, "CHUNK", chunk)
    p = tmp_path / "c.txt"
    data = good.encode() + bad + b"x" + tail.encode()
    p.write_bytes(data)
    with pytest.raises(CorpusError) as whole:
        decode_bytes(data, str(p))
    with pytest.raises(CorpusError) as streamed:
        load_corpus(p)
    assert str(streamed.value) == str(whole.value)


def test_id_types_and_a_cjk_vocabulary(tmp_path):
    assert id_dtype(256) == np.uint8 and id_dtype(257) == np.uint16 and id_dtype(70_000) == np.uint32
    p = tmp_path / "cjk.txt"
    text = "".join(chr(0x4E00 + i) for i in range(3000)) + "\n🌸"
    p.write_text(text, encoding="utf-8")
    c = load_corpus(p)
    assert c.ids.dtype == np.uint16 and len(c.vocab) == 3002
    assert c.vocab.decode(c.ids) == text


def test_fixed_vocabulary_and_changed_file(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("hello", encoding="utf-8")
    with pytest.raises(VocabError, match="h"):
        load_corpus(p, vocab=Vocab("elo"))
    with pytest.raises(CorpusError, match="changed"):
        load_corpus(p, expect_sha="0" * 64)


def test_disk_cache_trains_identically_and_is_reused(tmp_path, monkeypatch):
    p = tmp_path / "tales.txt"
    p.write_text(prose(30_000, seed=5), encoding="utf-8")
    opts = dict(layers=1, hidden=16, embed=8, batch_size=4, seq_len=16, max_steps=6, epochs=None, eval_every=3,
                dtype="float64")
    a = new_trainer(p, tmp_path / "in-memory", TrainOptions(**opts))
    assert isinstance(a.stream.ids, np.ndarray) and not list((tmp_path / "in-memory").glob("ids-*"))
    a.run()
    a.close()
    monkeypatch.setattr(corpus_mod, "MMAP_ABOVE", 0)
    b = new_trainer(p, tmp_path / "mapped", TrainOptions(**opts))
    cache = list((tmp_path / "mapped").glob("ids-*.npy"))
    assert len(cache) == 1
    assert isinstance(b.stream.ids, corpus_mod.DiskIds) and len(b.stream.ids) < a.n_chars  # the training part
    np.testing.assert_array_equal(np.load(cache[0]), a.vocab.encode(p.read_text(encoding="utf-8")))
    np.testing.assert_array_equal(b.val_ids, a.val_ids)
    b.run()
    b.close()
    np.testing.assert_array_equal(a.model.flat, b.model.flat)
    stamp = cache[0].stat().st_mtime_ns
    r = resume_trainer(tmp_path / "mapped", None, {"max_steps": 9})
    r.run()
    r.close()
    assert cache[0].stat().st_mtime_ns == stamp  # reused, not re-encoded


# ---------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_corpus_reader_bytes(data):
    try:
        text = decode_bytes(data)
    except CorpusError:
        return
    assert not text.startswith("\ufeff")
    assert text == data.decode("utf-8").removeprefix("\ufeff")


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_corpus_files(tmp_path, data):
    p = tmp_path / "c.txt"
    p.write_bytes(data)
    try:
        read_text(p)
    except CorpusError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=60), st.text(max_size=60))
def test_fuzz_vocabulary(corpus_text, other):
    v = Vocab.from_text(corpus_text)
    assert v.decode(v.encode(corpus_text)) == corpus_text
    try:
        assert v.decode(v.encode(other)) == other
    except VocabError as e:
        assert isinstance(e, LstmgenError)
        assert set(other) - set(corpus_text)
