"""The Python API (lstmgen.load, lstmgen.train, Model.sample/eval/trace/fill/explore) gives what its
command-line twin prints, raises lstmgen's errors with the same messages, and trains from Python
with worker processes that start and stop with the call."""

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke
from typer.testing import CliRunner

import lstmgen
from lstmgen.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden=16, embed=8, batch_size=4, seq_len=16, layers=2)


def cli(*args) -> str:
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return r.stdout


@pytest.fixture(scope="module")
def corpus(write_prose) -> Path:
    return write_prose(6000, seed=3)


@pytest.fixture(scope="module")
def run(corpus) -> Path:
    """Trained from Python, with two worker processes."""
    out = lstmgen.train(corpus, out=corpus.parent / "run", max_steps=6, eval_every=3, workers=2, dtype="float64",
                        **TINY)
    assert out == corpus.parent / "run" and (out / "best.npz").is_file()
    return out


def test_load_describes_the_model(run):
    m = lstmgen.load(run)
    assert m.config.cell == "lstm" and m.config.layers == 2 and m.config.hidden == 16
    assert m.vocab == lstmgen.load(run / "latest.npz").vocab and len(m.vocab) == m.config.vocab_size
    assert m.num_params == sum(p.size for p in m.network.params.values())
    assert re.fullmatch(r"<lstmgen\.Model lstm 2×16, embed 8, vocab \d+, [\d,]+ params, float64, step 6 from .*>",
                        repr(m))


def test_sample_is_the_text_the_command_prints(run):
    m = lstmgen.load(run)
    for opts in ({"seed": 4}, {"seed": 5, "temperature": 0.7, "top_k": 5}, {"seed": 6, "top_p": 0.8, "stop": "e"}):
        flags = [x for k, v in opts.items() for x in (f"--{k.replace('_', '-')}", v)]
        assert m.sample(80, prime="The ", **opts) == cli("sample", run, "--length", 80, "--prime", "The ", *flags)
    many = m.sample(30, seed=7, num_samples=3, prime="A")
    assert isinstance(many, list) and len(many) == 3 and all(s.startswith("A") for s in many)
    assert "\n\n".join(many) == cli("sample", run, "--length", 30, "--seed", 7, "--num-samples", 3, "--prime", "A")


def test_eval_is_the_commands_json(run, corpus, tmp_path):
    text = corpus.read_text(encoding="utf-8")[:700]
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    assert lstmgen.load(run).eval(text) == json.loads(cli("eval", run, tmp_path / "t.txt", "--json"))


def test_trace_is_the_export_exactly(run, tmp_path):
    text = "The old man said \"no\" twice."
    arrays = lstmgen.load(run).trace(text)
    cli("inspect", run, "--text", text, "--export", tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
        assert set(z.files) == set(arrays) | {"text"}
        for k, v in arrays.items():
            assert v.dtype == z[k].dtype and np.array_equal(v, z[k]), k
    assert arrays["layer1.f"].shape == (len(text), 16) and arrays["probs"].shape[0] == len(text)


def test_memory_is_an_entry_of_the_commands_json(run):
    text = "The old man said no twice, and then once more."
    entry = lstmgen.load(run).memory(text, max_distance=12)
    (cli_entry,) = json.loads(cli("memory", run, "--text", text, "--max-distance", 12, "--json"))["models"]
    assert {k: v for k, v in entry.items() if k != "checkpoint"} == \
           {k: v for k, v in cli_entry.items() if k not in ("checkpoint", "source")}
    assert len(entry["influence"]) == 13 and entry["model"] == "lstm 2×16"


def test_fill_is_what_the_command_prints(run):
    m = lstmgen.load(run)
    assert m.fill("The _ld m_n") == cli("fill", run, "The _ld m_n").rstrip("\n")
    assert m.fill("The #ld", mask="#", temperature=1.0, seed=3) == cli("fill", run, "The #ld", "--mask", "#",
                                                                        "--temperature", 1.0, "--seed", 3).rstrip("\n")


def test_explore_shows_the_explorer_page_inline_and_saves_it(run, tmp_path):
    page = lstmgen.load(run).explore("The cat sat.")
    frame = page._repr_html_()
    assert frame.startswith('<iframe srcdoc="') and 'sandbox="allow-scripts"' in frame
    inner = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert inner == page.html and "<script" not in frame  # the page is an attribute's text, not markup
    saved = page.save(tmp_path / "p.html")
    cli("inspect", run, "--text", "The cat sat.", "--html", tmp_path / "c.html")

    def data(p):
        return json.loads(re.search(r'<script id="trace" type="application/json">(.*?)</script>',
                                    p.read_text(encoding="utf-8"), re.S).group(1))

    mine, theirs = data(saved), data(tmp_path / "c.html")
    assert mine["text"] == theirs["text"] == "The cat sat." and mine["layers"] == theirs["layers"]
    assert lstmgen.load(run).explore().summary.count("characters of the validation tail of tales.txt") == 1


def test_errors_are_lstmgen_errors_with_the_commands_messages(run, tmp_path):
    m = lstmgen.load(run)
    r = runner.invoke(app, ["sample", str(run), "--prime", "Q\x1b§"])
    with pytest.raises(lstmgen.VocabError) as e:
        m.sample(5, prime="Q\x1b§")
    assert r.exit_code == 1 and r.stderr.strip() == f"error: {e.value}".replace("\x1b", "U+001B")
    with pytest.raises(lstmgen.ConfigError, match="--temperature"):
        m.sample(5, temperature=float("inf"))
    with pytest.raises(lstmgen.CheckpointError, match="not found"):
        lstmgen.load(tmp_path / "nope.npz")
    with pytest.raises(lstmgen.CorpusError, match="not found"):
        lstmgen.train(tmp_path / "nope.txt", out=tmp_path / "r")
    with pytest.raises(lstmgen.ConfigError, match="--max-stepz"):
        lstmgen.train(tmp_path / "nope.txt", max_stepz=3)
    with pytest.raises(lstmgen.ConfigError, match="--hidden"):
        lstmgen.train(tmp_path / "nope.txt", hidden=0)
    assert not (tmp_path / "r").exists()


def test_keyboard_interrupt_during_train_saves_and_leaves_no_worker(corpus, tmp_path):
    marker = tmp_path / "interrupt-me"
    script = (f"import lstmgen, sys\n"
              f"try:\n"
              f"    lstmgen.train({str(corpus)!r}, out={str(marker)!r}, max_time='60s', workers=2, eval_every=5,\n"
              f"                  hidden=16, embed=8, batch_size=4, seq_len=16)\n"
              f"except KeyboardInterrupt:\n"
              f"    print('KeyboardInterrupt raised')\n"
              f"    sys.exit(7)\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (marker / "metrics.jsonl").exists():  # training has begun
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.1)
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    assert len(children) == 2, children  # the two workers
    p.send_signal(signal.SIGINT)  # what the notebook's stop button sends
    out, err = p.communicate(timeout=60)
    assert p.returncode == 7 and "KeyboardInterrupt raised" in out, err
    assert (marker / "latest.npz").is_file() and lstmgen.load(marker / "latest.npz").step > 0
    time.sleep(0.5)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_the_notebook_runs_top_to_bottom(tmp_path):
    env = {**os.environ, "LSTMGEN_QUICK": "1", "LSTMGEN_RUNS": str(tmp_path), "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "notebook.py")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("expr: (") and "unit " in r.stdout
    assert (tmp_path / "explorer.html").is_file() and (tmp_path / "structured" / "best.npz").is_file()
