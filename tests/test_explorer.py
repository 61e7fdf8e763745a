"""inspect --html: one self-contained page whose data equals the export, and which a real browser
renders with the unit's colours and the selection's matching units."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmgen.cli import app
from lstmgen.explorer import dequantise
from lstmgen.synthetic import structured

runner = CliRunner()


def train_and_trace(d: Path, chars: int, seed: int, *train_args) -> tuple[Path, Path, str]:
    """A small model trained on the structured corpus, traced into a page and an export:
    (page, export, what inspect said on stderr)."""
    corpus = d / "s.txt"
    corpus.write_text(structured(chars, seed=seed), encoding="utf-8")
    r = runner.invoke(app, ["train", str(corpus), "--out", str(d / "run"), "--embed", "8", "--batch-size", "8",
                            "--seq-len", "32", "--workers", "1", *train_args])
    assert r.exit_code == 0, r.output
    html, npz = d / "x.html", d / "x.npz"
    r = runner.invoke(app, ["inspect", str(d / "run"), "--html", str(html), "--export", str(npz)])
    assert r.exit_code == 0, r.output
    return html, npz, r.stderr


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    html, npz, said = train_and_trace(tmp_path_factory.mktemp("explorer"), 30_000, 2, "--hidden", "24",
                                      "--layers", "2", "--max-steps", "40", "--eval-every", "20")
    assert re.search(r"wrote .*x\.html \(\d+\.\d MB: [\d,]+ characters × 2 layer\(s\) × 6 quantities × 24 units",
                     said.replace("\n", " ")), said
    return html, npz


def embedded(html: Path) -> dict:
    m = re.search(r'<script id="trace" type="application/json">(.*?)</script>', html.read_text(), re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_the_embedded_data_equals_the_export_within_the_quantisation_step(page):
    html, npz = page
    doc = embedded(html)
    with np.load(npz) as z:
        assert doc["text"] == str(z["text"]) and doc["T"] == len(doc["text"])
        for k, layer in enumerate(doc["layers"]):
            for q, e in layer.items():
                want = z[f"layer{k}.{q}"].astype(np.float64)
                codes = np.frombuffer(base64.b64decode(e["data"]), dtype=np.uint8).reshape(want.shape)
                got = dequantise(codes, e["lo"], e["hi"])
                step = (e["hi"] - e["lo"]) / 255
                assert np.abs(got - want).max() <= step / 2 + 1e-9, (k, q)
        probs = z["probs"]
        top = np.argsort(-probs, axis=1)[:, :5]
        assert np.array_equal(np.array(doc["top_ids"]), top)


def test_the_page_is_self_contained(page):
    text = page[0].read_text()
    assert "http:" not in text and "https:" not in text
    assert "<script src" not in text and "<link" not in text and "@import" not in text


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def dump_dom(html: Path, fragment: str) -> str:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium when it can)")
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                        f"file://{html}#{fragment}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_a_browser_colours_the_text_by_the_unit_in_the_url(page):
    html, npz = page
    dom = dump_dom(html, "layer=0&q=c&unit=5")
    spans = re.findall(r'<span data-t="(\d+)"[^>]*style="background-color: rgb\((\d+), (\d+), (\d+)\)', dom)
    with np.load(npz) as z:
        c = z["layer0.c"][:, 5]
    assert len(spans) == len(c)
    value = np.tanh(np.array([c[int(t)] for t, *_ in spans]))  # c is shown through tanh
    # position on the scale red (−1) … white (0) … blue (+1), each side read off the one channel that
    # moves most there (each channel is rounded on its own, so a mix of channels need not be monotone)
    scale = np.array([(247 - int(r)) / 214 if int(b) >= int(r) else -(247 - int(b)) / 204 for _, r, _, b in spans])
    order = np.argsort(value, kind="stable")
    assert np.all(np.diff(scale[order]) >= 0), "colours are not monotone in the unit's value"
    assert scale.min() < scale.max()


def test_a_browser_lists_units_that_are_on_inside_a_selection(page):
    html, npz = page
    a, b = 300, 340
    dom = dump_dom(html, f"sel={a}-{b}")
    items = re.findall(r'<li data-layer="(\d+)" data-q="(\w+)" data-unit="(\d+)"', dom)
    assert len(items) >= 5
    inside = np.zeros(len(embedded(html)["text"]), bool)
    inside[a:b] = True
    with np.load(npz) as z:  # the page's score, from the exported values: mean inside − mean outside
        scores = {}
        for name in z.files:
            if name.startswith("layer"):
                k, q = name.removeprefix("layer").split(".")
                v = z[name].astype(np.float64)
                v = np.tanh(v) if q == "c" else v
                for j, d in enumerate(v[inside].mean(axis=0) - v[~inside].mean(axis=0)):
                    scores[(k, q, str(j))] = d
    best = max(scores.values())
    assert scores[items[0]] > 0, "the first match is not more on inside the selection than outside"
    assert scores[items[0]] >= best - 0.02  # the best unit, up to the 8-bit quantisation
    listed = [scores[i] for i in items]  # best first, up to the quantisation
    assert max(abs(x - y) for x, y in zip(listed, sorted(listed, reverse=True))) < 0.02


def test_a_bidirectional_model_shows_both_stacks(tmp_path):
    html, npz, _ = train_and_trace(tmp_path, 20_000, 4, "--hidden", "16", "--max-steps", "20", "--direction", "bi",
                                   "--eval-every", "10")
    doc = embedded(html)
    assert doc["direction"] == "bi" and doc["layer_names"] == ["0", "0 ←"]
    with np.load(npz) as z:
        e = doc["layers"][1]["c"]  # the backward stack's layer 0
        want = z["layer0_reverse.c"].astype(np.float64)
        codes = np.frombuffer(base64.b64decode(e["data"]), dtype=np.uint8).reshape(want.shape)
        assert np.abs(dequantise(codes, e["lo"], e["hi"]) - want).max() <= (e["hi"] - e["lo"]) / 510 + 1e-9
    dom = dump_dom(html, "layer=1&q=c&unit=3")
    assert 'id="unitname">layer 0 ← · c[3]' in dom
    dom = dump_dom(html, "infl=60")  # a cloze guess reads both sides: characters after it count too
    marked = [int(t) for t in re.findall(r'<span data-t="(\d+)"[^>]*data-infl=', dom)]
    assert min(marked) == 10 and max(marked) == 110 and 60 in marked


def test_a_click_or_infl_in_the_url_colours_the_characters_by_their_influence(page):
    """#infl=T sets data-infl on the characters T−D … T: the influence memory measures, relative to the
    largest (8-bit, so within 1/255 and the 2-decimal rounding)."""
    from lstmgen import checkpoint as ckpt_io
    from lstmgen.memory import influence
    from lstmgen.model import CharLM

    html, _ = page
    doc = embedded(html)
    ck = ckpt_io.load(html.parent / "run")
    model = CharLM(ck.config, params=ck.params)
    ids = [ck.meta["vocab"].index(c) for c in doc["text"]]
    T = 120
    row = influence(model, ids, doc["infl"]["D"]).left[T]
    want = {T - d: v / np.nanmax(row) for d, v in enumerate(row)}
    dom = dump_dom(html, f"infl={T}")
    tags = re.findall(r'<span data-t="\d+"[^>]*>', dom)
    got = {int(re.search(r'data-t="(\d+)"', tag).group(1)): float(re.search(r'data-infl="([\d.]+)"', tag).group(1))
           for tag in tags if "data-infl" in tag}
    assert set(got) == set(want) and doc["infl"]["D"] >= 50
    for s, v in got.items():
        assert abs(v - want[s]) <= 1 / 255 + 0.005 + 1e-9, s
    assert got[max(got, key=got.get)] == 1.0
    assert 'class="target"' in dom and "Why this guess" in dom
