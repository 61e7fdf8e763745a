"""Checkpoints: round trip, atomic write, and one clear CheckpointError for anything else."""

import json
import os

import numpy as np
import pytest

from lstmgen import checkpoint as ckpt_io
from lstmgen.errors import CheckpointError, DivergenceError
from lstmgen.model import CharLM, ModelConfig

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
