"""inspect --html built safely by construction: names and texts full of HTML, script, comment and
template markers are shown as text and never run, in a real browser; the URL state reaches only the
page's own keys."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lstmgen import explorer, probe
from lstmgen.cli import app
from lstmgen.cli.base import load_model
from lstmgen.terminal import shown

runner = CliRunner()

# every printable ASCII character, the separators that end a JavaScript line, an astral character
# (two UTF-16 units in the browser, one character for the model) and a few others
ALPHABET = "".join(map(chr, range(32, 127))) + "\n\t\u2028\u2029é日😀\u202e"
CANARY = "document.documentElement.setAttribute('data-pwned','1')"
HOSTILE = [
    f"<img src=x onerror=\"{CANARY}\">", f"<script>{CANARY}</script>", "</script>", "<!--<script>", "<!--",
    "-->", "<![CDATA[", "]]>", "__DATA__", "__TITLE__", "__SUMMARY__", "\u2028", "\u2029", "&lt;", "&amp;",
    "<svg onload=\"" + CANARY + "\">", "'\"`", "${1+1}", "</title><script>" + CANARY + "</script>",
]


def _browser() -> str:
    found = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if found is None:
        pytest.skip("no Chromium here (.ci/run installs Debian's chromium when it can)")
    return found


def dom_of(page: Path, fragment: str = "") -> str:
    r = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--dump-dom", f"file://{page}" + (f"#{fragment}" if fragment else "")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


class _Page(HTMLParser):
    """What a person sees of the page: its title, the #text characters, and whether the canary ran."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title, self.chars, self.pwned, self.ready = "", [], False, False
        self._in_title = self._in_span = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-pwned" in a:
            self.pwned = True
        if tag == "body" and "data-ready-ms" in a:
            self.ready = True
        self._in_title = tag == "title" and not self.title
        if tag == "span" and "data-t" in a:
            self._in_span = True
            self.chars.append("")

    def handle_endtag(self, tag):
        if tag == "span":
            self._in_span = False
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._in_span:
            self.chars[-1] += data

    def text(self) -> str:
        return "".join("\n" if c == "\u21b5\n" else c for c in self.chars)


def seen(page: Path, fragment: str = "") -> _Page:
    p = _Page()
    p.feed(dom_of(page, fragment))
    return p


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory) -> Path:
    """A tiny model whose vocabulary holds every character of ALPHABET, in a run directory whose
    name holds a template marker."""
    d = tmp_path_factory.mktemp("safety")
    corpus = d / "wide.txt"
    corpus.write_text((ALPHABET + "\n") * 30, encoding="utf-8")
    run = d / "r__DATA__<b>"
    r = runner.invoke(app, ["train", str(corpus), "--out", str(run), "--hidden", "8", "--embed", "4",
                            "--batch-size", "4", "--seq-len", "8", "--max-steps", "2", "--workers", "1"])
    assert r.exit_code == 0, r.output
    return run


def embedded(page: Path) -> dict:
    blocks = re.findall(r'<script id="trace" type="application/json">(.*?)</script>', page.read_text(), re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def test_a_file_and_run_named_with_the_data_marker_inject_nothing(wide_run, tmp_path):
    text = f'<img src=x onerror="{CANARY}"> a <!--<script> b </script> c\n'
    hostile = tmp_path / "q__DATA__.txt"
    hostile.write_text(text, encoding="utf-8")
    page = tmp_path / "d.html"
    r = runner.invoke(app, ["inspect", str(wide_run), "--file", str(hostile), "--html", str(page)])
    assert r.exit_code == 0, r.output
    html = page.read_text(encoding="utf-8")
    assert html.count('<script id="trace"') == 1 and "<img" not in html.split("<script>")[0]
    doc = embedded(page)
    assert doc["text"] == text and "q__DATA__.txt" in doc["summary"]
    assert f"<title>lstmgen inspect: {wide_run.name.replace('<', '&lt;').replace('>', '&gt;')}</title>" in html
    got = seen(page)
    assert got.ready and not got.pwned
    assert got.title == f"lstmgen inspect: {wide_run.name}"
    assert got.text() == text


def test_a_text_holding_a_comment_and_script_opening_keeps_the_page_whole(wide_run, tmp_path):
    page = tmp_path / "p.html"
    r = runner.invoke(app, ["inspect", str(wide_run), "--text", "a <!--<script> b", "--html", str(page)])
    assert r.exit_code == 0, r.output
    got = seen(page)
    assert got.ready and got.text() == "a <!--<script> b"
    dom = dom_of(page)
    assert re.search(r'<select id="layer"[^>]*>\s*<option', dom), "the layer picker is empty"
    assert re.search(r'id="lists".*?<li>layer 0 ', dom, re.S), "no ranked units"


@pytest.mark.parametrize("fragment", ["q=constructor", "q=__proto__", "q=toString", "q=hasOwnProperty",
                                      "layer=constructor&q=c", "layer=1e9&q=h", "unit=-5&q=valueOf"])
def test_the_url_reaches_only_the_pages_own_keys(wide_run, tmp_path, fragment):
    page = tmp_path / "u.html"
    r = runner.invoke(app, ["inspect", str(wide_run), "--text", "abc", "--html", str(page)])
    assert r.exit_code == 0, r.output
    dom = dom_of(page, fragment)
    assert 'data-ready-ms="' in dom, f"#{fragment} stopped the page's script"
    assert re.search(r'id="unitname">layer 0 · c\[\d+\]', dom)


_texts = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(ALPHABET, max_size=8)), min_size=1, max_size=6).map(
    "".join).filter(lambda s: 0 < len(s) <= 200)
_names = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=6)), min_size=1, max_size=4).map(
    "".join)


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_texts, name=_names)
def test_fuzz_generated_texts_and_names_are_shown_exactly_and_never_run(wide_run, tmp_path, text, name):
    """Texts and names full of HTML, script, comment, CDATA and template markers and Unicode line
    separators: the page's #text is exactly the text, its title exactly the name (as a terminal
    would show it: control characters made visible), and the canary script never runs."""
    model, vocab, _ = load_model(wide_run)
    trace = probe.trace_text(model, vocab, text)
    page = tmp_path / "f.html"
    page.write_text(explorer.render(trace, vocab.chars, summary=name, title=name), encoding="utf-8")
    got = seen(page)
    assert got.ready and not got.pwned
    assert got.text() == text
    # the browser's title is the element's text with ASCII whitespace stripped and collapsed
    assert got.title == shown(name), (got.title, name)
    assert embedded(page)["summary"] == name
