"""What many test modules share: the cell fixture, one small-model option list, one prose corpus
fixture, the CLI run in-process and as a real subprocess, central differences, and one naive
reference trace written straight from the equations."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmgen.cli import app
from lstmgen.model import CELL_TYPES
from lstmgen.synthetic import prose

# a small model that still has two layers: fast, and every code path between layers runs
SMALL = ["--hidden", "16", "--embed", "8", "--layers", "2", "--batch-size", "4", "--seq-len", "16"]
RUNNER = CliRunner()


@pytest.fixture(params=CELL_TYPES)
def cell(request):
    return request.param


@pytest.fixture(scope="session")
def write_prose(tmp_path_factory):
    """write_prose(chars, seed, name="tales.txt") → the path of a new file of generated prose."""

    def write(chars: int, seed: int, name: str = "tales.txt") -> Path:
        p = tmp_path_factory.mktemp("corpus") / name
        p.write_text(prose(chars, seed=seed), encoding="utf-8")
        return p

    return write


def invoke(*args, **kw):
    """The CLI in this process (CliRunner): the result has exit_code, stdout, stderr, output."""
    return RUNNER.invoke(app, [str(a) for a in args], **kw)


def run_cli(*args, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    """``python -m lstmgen ARGS`` as a real subprocess, text captured."""
    return subprocess.run([sys.executable, "-m", "lstmgen", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def popen_cli(*args, **kw) -> subprocess.Popen:
    """``python -m lstmgen ARGS`` started and left running (stdout and stderr piped, text)."""
    return subprocess.Popen([sys.executable, "-m", "lstmgen", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar f() w.r.t. every entry of array x (modified in place, restored)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def _sig(a):
    return 1 / (1 + np.exp(-a))


def naive_trace(p: dict, cell: str, layers: int, ids) -> tuple[list[dict], np.ndarray]:
    """A left-to-right model over ids from a zero state, one character, one layer and one vector at a
    time, written straight from the textbook equations (no lstmgen code): per layer quantity → (T, H),
    and the next-character probabilities (T, V)."""
    H = p["decoder.weight"].shape[1]
    states = [(np.zeros(H), np.zeros(H)) for _ in range(layers)]
    out = [{} for _ in range(layers)]
    probs = []
    y = np.zeros(p["decoder.weight"].shape[0])  # jordan: the previous output, fed back
    for c in ids:
        x = p["embedding.weight"][c]
        for k in range(layers):
            h, cc = states[k]
            if cell == "jordan" and k == 0:  # reads the previous output y instead of its own h
                x = np.tanh(p["rnn.weight_ih_l0"] @ x + p["rnn.bias_ih_l0"] + p["rnn.weight_yh_l0"] @ y
                            + p["rnn.bias_yh_l0"])
                out[0].setdefault("h", []).append(x)
                continue
            a_x = p[f"rnn.weight_ih_l{k}"] @ x + p[f"rnn.bias_ih_l{k}"]
            a_h = p[f"rnn.weight_hh_l{k}"] @ h + p[f"rnn.bias_hh_l{k}"]
            a = a_x + a_h
            if cell in ("rnn", "jordan"):
                h = np.tanh(a)
                q = {"h": h}
            elif cell == "gru":
                r, z = _sig(a[:H]), _sig(a[H : 2 * H])
                n = np.tanh(a_x[2 * H :] + r * a_h[2 * H :])
                h = (1 - z) * n + z * h
                q = {"r": r, "z": z, "n": n, "h": h}
            elif cell == "cifg":
                i, g, o = _sig(a[:H]), np.tanh(a[H : 2 * H]), _sig(a[2 * H :])
                f = 1 - i
                cc = f * cc + i * g
                h = o * np.tanh(cc)
                q = {"i": i, "f": f, "g": g, "o": o, "c": cc, "h": h}
            else:  # lstm; peephole with its diagonal peepholes
                pp = p.get(f"rnn.weight_peep_l{k}", np.zeros((3, H)))
                i = _sig(a[:H] + pp[0] * cc)
                f = _sig(a[H : 2 * H] + pp[1] * cc)
                g = np.tanh(a[2 * H : 3 * H])
                cc = f * cc + i * g
                o = _sig(a[3 * H :] + pp[2] * cc)
                h = o * np.tanh(cc)
                q = {"i": i, "f": f, "g": g, "o": o, "c": cc, "h": h}
            states[k] = (h, cc)
            for name, v in q.items():
                out[k].setdefault(name, []).append(v)
            x = h
        z = p["decoder.weight"] @ x + p["decoder.bias"]
        y = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        probs.append(y)
    return [{k: np.array(v) for k, v in layer.items()} for layer in out], np.array(probs)
