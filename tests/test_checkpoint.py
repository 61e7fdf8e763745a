"""Checkpoints: round trip, atomic write, and one clear CheckpointError for anything else (fuzzed too)."""

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL, invoke
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmgen import checkpoint as ckpt_io
from lstmgen.errors import CheckpointError, DivergenceError
from lstmgen.generate import generate
from lstmgen.model import CharLM, ModelConfig
from lstmgen.text import Vocab

META = {"vocab": "abcdefg", "model": {"cell": "gru", "layers": 2, "hidden": 5, "embed": 4, "dropout": 0.0,
                                     "dtype": "float32"}, "train": {"step": 3}}


@pytest.fixture()
def good(tmp_path):
    m = CharLM(ModelConfig(vocab_size=7, cell="gru", layers=2, hidden=5, embed=4))
    path = tmp_path / "good.npz"
    state = [(np.ones((5, 2), np.float32),), (np.zeros((5, 2), np.float32),)]
    ckpt_io.save(path, ckpt_io.Checkpoint(params=m.params, meta=dict(META), state=state,
                                          optim={"exp_avg": np.zeros(m.flat.size, np.float32),
                                                 "t": np.array(3)}))
    return path, m


def test_round_trip(good):
    path, m = good
    ck = ckpt_io.load(path)
    for k, v in m.params.items():
        np.testing.assert_array_equal(ck.params[k], v)
    assert ck.meta["format"] == "lstmgen-checkpoint" and ck.meta["format_version"] == ckpt_io.FORMAT_VERSION
    assert ck.state[0][0].shape == (5, 2) and int(ck.optim["t"]) == 3
    assert [p.name for p in path.parent.iterdir()] == ["good.npz"]  # no temporary left behind


def _rewrite(path, out, edit):
    d = dict(np.load(path, allow_pickle=False))
    edit(d)
    np.savez(out, **d)
    return out


def _meta_edit(**kw):
    def edit(d):
        meta = json.loads(str(d["meta.json"]))
        meta.update(kw)
        d["meta.json"] = np.array(json.dumps(meta))
    return edit


CASES = {
    "newer format": (_meta_edit(format_version=99), "newer than this lstmgen"),
    "foreign format": (_meta_edit(format="something-else"), "not a valid lstmgen checkpoint"),
    "missing key": (lambda d: d.pop("decoder.bias"), "missing parameter decoder.bias"),
    "extra key": (lambda d: d.update(extra=np.zeros(2)), "unexpected keys"),
    "wrong shape": (lambda d: d.update({"decoder.bias": np.zeros(6, np.float32)}), "has shape"),
    "wrong dtype": (lambda d: d.update({"decoder.bias": np.zeros(7, np.float64)}), "dtype"),
    "non-finite": (lambda d: d.update({"decoder.bias": np.full(7, np.nan, np.float32)}), "non-finite"),
    "meta not json": (lambda d: d.update({"meta.json": np.array("{oops")}), "not JSON"),
    "no meta": (lambda d: d.pop("meta.json"), "no meta.json"),
    "bad optimizer state": (lambda d: d.update({"optim.exp_avg": np.zeros(3, np.float32)}), "optim.exp_avg"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_defects_are_refused(good, tmp_path, case):
    edit, needle = CASES[case]
    bad = _rewrite(good[0], tmp_path / "bad.npz", edit)
    with pytest.raises(CheckpointError, match=needle):
        ckpt_io.load(bad)


def test_truncated_and_random_bytes(good, tmp_path):
    data = good[0].read_bytes()
    for name, blob in [("trunc.npz", data[: len(data) // 2]), ("rand.npz", os.urandom(2000)),
                       ("zipjunk.npz", b"PK\x03\x04" + os.urandom(500)), ("empty.npz", b"")]:
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(CheckpointError):
            ckpt_io.load(p)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_objects_are_refused_without_unpickling(good, tmp_path):
    marker = tmp_path / "pwned"
    d = dict(np.load(good[0], allow_pickle=False))
    d["decoder.bias"] = np.array([_Payload(str(marker))], dtype=object)
    np.savez(tmp_path / "evil.npz", **d)
    with pytest.raises(CheckpointError, match="pickled"):
        ckpt_io.load(tmp_path / "evil.npz")
    assert not marker.exists()


def test_refuses_to_save_non_finite_and_keeps_the_old_file(good):
    path, m = good
    before = path.read_bytes()
    m.params["decoder.bias"][0] = np.inf
    with pytest.raises(DivergenceError):
        ckpt_io.save(path, ckpt_io.Checkpoint(params=m.params, meta=dict(META)))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["good.npz"]


def test_run_directory_resolves_to_best_then_latest(good, tmp_path):
    path, _ = good
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ckpt_io.resolve(run)
    (run / "latest.npz").write_bytes(path.read_bytes())
    assert ckpt_io.resolve(run).name == "latest.npz"
    (run / "best.npz").write_bytes(path.read_bytes())
    assert ckpt_io.resolve(run).name == "best.npz"


# ---------------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good_bytes(write_prose, tmp_path_factory) -> bytes:
    """A real run's latest.npz: parameters, optimizer state, carried state and metadata."""
    out = tmp_path_factory.mktemp("trained") / "run"
    r = invoke("train", write_prose(20_000, seed=2), "--out", out, *SMALL, "--max-steps", "4", "--eval-every", "2")
    assert r.exit_code == 0, r.output
    return (out / "latest.npz").read_bytes()


def _load_and_use(tmp_path: Path, data: bytes) -> None:
    """Load mutated bytes; if it loads, the model must work (validation missed nothing)."""
    p = tmp_path / "fuzz.npz"
    p.write_bytes(data)
    try:
        ck = ckpt_io.load(p)
    except CheckpointError:
        return
    model = CharLM(ck.config, params=ck.params)
    text = "".join(generate(model, Vocab(ck.meta["vocab"]), 5, rng=np.random.default_rng(0)))
    assert len(text) == 5


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10**6), flips=st.lists(st.tuples(st.integers(0, 10**6),
                                                                               st.integers(1, 255)), max_size=4))
def test_fuzz_truncated_and_flipped_checkpoints(good_bytes, tmp_path, cut, flips):
    data = bytearray(good_bytes[: cut % (len(good_bytes) + 1)] if cut % 3 == 0 else good_bytes)
    for pos, x in flips:
        if data:
            data[pos % len(data)] ^= x
    _load_and_use(tmp_path, bytes(data))


@pytest.mark.parametrize("old, new", [(b"(", b"|"), (b")", b"(")])
def test_damaged_array_header_is_one_checkpoint_error(good_bytes, tmp_path, old, new):
    """Found by the fuzz test above: NumPy parses an .npy header with ast.literal_eval, so a
    flipped header byte raised SyntaxError / tokenize.TokenError, not ValueError. (A large
    member: zipfile checks a member's CRC only once it has read to its end.)"""
    at = good_bytes.index(old, good_bytes.index(b"'shape': ", good_bytes.index(b"optim.exp_avg.npy")))
    _load_and_use(tmp_path, good_bytes[:at] + new + good_bytes[at + 1 :])


@pytest.mark.parametrize("offset, value", [(10, 99), (8, 0x20), (8, 0x01)])
def test_damaged_zip_flags_are_one_checkpoint_error(good_bytes, tmp_path, offset, value):
    """Found by the fuzz test above: a flipped compression method (NotImplementedError), the
    "compressed patched data" flag (NotImplementedError) or the encryption flag (RuntimeError) in
    the central directory's entry of a member (offsets from its PK\\x01\\x02 signature)."""
    data = bytearray(good_bytes)
    data[good_bytes.index(b"PK\x01\x02") + offset] = value
    _load_and_use(tmp_path, bytes(data))


def _arrays(good_bytes: bytes) -> dict:
    with np.load(io.BytesIO(good_bytes), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@FUZZ
@given(data=st.data())
def test_fuzz_edited_arrays_and_metadata(good_bytes, tmp_path, data):
    arrays = _arrays(good_bytes)
    meta = json.loads(str(arrays["meta.json"]))
    action = data.draw(st.sampled_from(["drop", "reshape", "retype", "meta", "vocab", "extra"]))
    key = data.draw(st.sampled_from(sorted(k for k in arrays if k != "meta.json")))
    if action == "drop":
        del arrays[key]
    elif action == "reshape":
        arrays[key] = np.resize(arrays[key], data.draw(st.lists(st.integers(0, 40), min_size=0, max_size=3)))
    elif action == "retype":
        arrays[key] = arrays[key].astype(data.draw(st.sampled_from(["float64", "float16", "int32", "U3", "bool"])))
    elif action == "meta":
        section = data.draw(st.sampled_from(["model", "train", "corpus", "format", "format_version", "vocab"]))
        value = data.draw(st.one_of(st.none(), st.integers(-5, 10**9), st.floats(allow_nan=True),
                                    st.text(max_size=5), st.lists(st.integers(), max_size=2)))
        if section == "model" and isinstance(meta.get("model"), dict):
            meta["model"][data.draw(st.sampled_from(sorted(meta["model"])))] = value
        else:
            meta[section] = value
    elif action == "vocab":
        meta["vocab"] = data.draw(st.text(min_size=0, max_size=40))
    else:
        arrays[data.draw(st.text(min_size=1, max_size=8))] = np.zeros(2)
    arrays["meta.json"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    try:
        np.savez(buf, **arrays)
    except (ValueError, zipfile.LargeZipFile):
        return
    _load_and_use(tmp_path, buf.getvalue())
