"""A fuzz test of the command line, run in-process: hostile values for every option of every command.

Each example is one ``lstmgen ...`` command line run through ``CliRunner`` in a fresh directory. The
values come from hostile pools: negative, zero, huge (10**12, 2**63), inf/nan, empty, control
characters, HTML/JS, ``__TEMPLATE__``-like strings, rich markup, lone surrogates, and names (of
files, runs and outputs) that hold all of these or are not UTF-8 at all.

Rules, checked after every example (``problems_of``):
  * exit 0, 1 or 2; no exception but SystemExit; no "Traceback" in stdout or stderr;
  * an error (exit 1 or 2) is at most MAX_ERR_LINES non-empty lines on stderr, and its output holds
    no raw ESC or BEL (a name with control characters must be shown visibly);
  * no file of the shared runs and inputs changes (bytes and mtime, compared after every example;
    ``train --out RUN`` is refused before it touches even RUN's lock);
  * a page written by ``inspect --html`` or ``plot --out`` keeps its markup: names and text are
    escaped, the trace JSON cannot end its script early, no template placeholder is filled twice;
  * no example runs longer than HANG_S: a value whose cost grows with it must be refused.

Two kinds of test, both derandomized hypothesis with a stated ``max_examples`` and no shrinking (a
failure shows the first failing command line): ``test_fuzz_option`` gives one option (or argument)
of one command every value of its pool, the rest of the command line sane (the pools are smaller
than ``max_examples``, so hypothesis goes through all of them); ``test_fuzz_command`` draws random
subsets of a command's options with mixed sane and hostile values. Cost stays bounded: ``train``
always runs ``--max-steps 1`` with a tiny model unless the option fuzzed is one of those,
``sample --length`` stays ≤ 50 and ``--num-samples`` ≤ 300 (both are streamed: their cost is their
value), ``gradcheck`` checks 2 elements per tensor. About 1,700 command lines, ~25 s on two cores
when all pass (each hang found adds 2 × HANG_S: hypothesis runs the failing example again).

NUL never goes into a file name here (no real argv can carry one; in-process it would only test
``os.stat``); it does go into the text-valued options.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import time
import traceback
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import pytest
import typer.testing
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lstmgen.cli import app
from lstmgen.model import CELL_TYPES
from lstmgen.optim import OPTIMIZERS, SCHEDULES
from lstmgen.synthetic import prose
from lstmgen.threads import get_threads, set_threads

runner = CliRunner()
HANG_S = 5.0  # one example longer than this is a hang (or a cost the tool should have refused)
MAX_ERR_LINES = 4  # an error (exit 1 or 2): at most this many non-empty lines on stderr
MEMORY = 3 * 2**30  # address space one example may add (Linux): beyond it, MemoryError

# Hostile names: run directories ("@runs/esc"), corpus files ("@files/esc" = NAMES["esc"] + ".txt") and
# output files ("@new/esc.html") are made with these (the non-UTF-8 one through its bytes).
NAMES = {
    "esc": "a\x1b[2Jb",
    "osc": "\x1b]0;PWNED\x07",
    "html": "<img src=x onerror=alert(1)>",
    "data": "__DATA__",
    "title": "__TITLE__",
    "summary": "__SUMMARY__",
    "markup": "[bold]b",
    "lsep": "l\u2028s",
    "crnl": "c\rr\nn",
    "bytes": os.fsdecode(b"\xff\xfe"),
}
INTS = ["-1", "0", "1", str(10**12), str(2**63), str(-(2**63)), "nan", "1e3", "\x1b]0;PWNED\x07", "\u0663"]
FLOATS = ["inf", "-inf", "nan", "1e308", "1e309", "-0", "1e-320", "-1.5", "0", "\x1b[2J"]
TEXTS = ["", " ", "\x1b]0;PWNED\x07", "a\x1b[2Jb", "\r", "\n", "\x00", "\u2028", "\udcff", "<script>alert(1)</script>",
         "<!--<script>", "</script>", "__DATA__", "__TITLE__", "[/]", "-1", "0", "inf", "--help"]
PATH_TEXTS = ["", "\x1b]0;PWNED\x07", "\udcff", "[/]", "__DATA__", "-"]  # relative: missing in a fresh directory
ALL = INTS + FLOATS + TEXTS

# Path tokens, resolved per example by World.resolve: the shared runs and inputs (never to change),
# fresh copies, fresh places to write; "@none" leaves an optional argument out.
RUN_NAMED = tuple(f"@runs/{k}" for k in NAMES)
FILE_NAMED = tuple(f"@files/{k}" for k in NAMES)
CKPT = ("@run", "@bi", "@run/latest.npz", "@run/best.npz", "@bi/latest.npz", *RUN_NAMED, "@garbage", "@corpus",
        "@missing", "@emptydir", "@root", "@broken", "@files")
TEXT_FILE = ("@corpus", "@hostile_text", *FILE_NAMED, "@files", "@empty", "@binary", "@emptydir", "@missing",
             "@run", "@run/latest.npz")
OUT_FILE = ("@new/out.html", "@new/out.svg", "@new/out.HTM", *(f"@new/{k}.html" for k in NAMES), "@nodir/out.html",
            "@run", "@emptydir", "@new/out.npz", "@new/out.csv")


class Opt(NamedTuple):
    pool: tuple  # the hostile values
    sane: tuple  # valid values (the first: what the sweep of another option uses, for an argument)
    flag: bool = False


def Int(*sane, cap: int | None = None) -> Opt:
    """An integer option; with ``cap``, no value above it (its cost is its value: a small budget)."""
    return Opt(tuple(v for v in INTS if cap is None or _as_int(v) is None or _as_int(v) <= cap), sane)


def Float(*sane) -> Opt:
    return Opt(tuple(FLOATS), sane)


def Text(*sane) -> Opt:
    return Opt(tuple(TEXTS), sane)


def Paths(tokens, *sane) -> Opt:
    return Opt((*tokens, *PATH_TEXTS), sane)


FLAG = Opt((), (), flag=True)


def _as_int(v: str) -> int | None:
    try:
        return int(v)
    except ValueError:
        return None


class Command(NamedTuple):
    args: dict  # positional arguments, in order: name -> Opt (its first sane value is the default)
    options: dict  # "--opt" -> Opt
    base: dict = {}  # always given (small budgets), unless fuzzed themselves
    instead: dict = {}  # "--opt" -> the base to use when --opt is given


def _o(**kw) -> dict:
    return {"--" + k.replace("_", "-"): v for k, v in kw.items()}


COMMANDS = {
    "train": Command(
        args={"CORPUS": Paths((*TEXT_FILE, "@none"), "@corpus")},
        base=_o(max_steps="1", hidden="8", embed="4", layers="1", batch_size="4", seq_len="8", workers="1",
                out="@new/run"),
        instead={"--resume": _o(max_steps="4", workers="1")},  # the run fixes the model; it is at step 3
        options=_o(
            glob=Text("*.txt", "*", "**/*", "*.npz", "["), seq_len=Int("1", "8"), batch_size=Int("1", "4"),
            val_frac=Float("0", "0.5", "0.99", "1"), cell=Text(*CELL_TYPES), direction=Text("fwd", "bi"),
            layers=Int("1", "2"), hidden=Int("1", "8"), embed=Int("1", "4"), dropout=Float("0", "0.5", "1"),
            dtype=Text("float32", "float64"), optimizer=Text(*OPTIMIZERS), lr=Float("0.01", "1e-9", "1e9"),
            lr_schedule=Text(*SCHEDULES), warmup=Int("0", "1"), weight_decay=Float("0", "0.1", "1e300"),
            grad_clip=Float("0", "1e-300", "5"), seed=Int("0", "1337"), max_steps=Int("1", "2", cap=3),
            epochs=Int("1", "2"), max_time=Text("1s", "1h", "0.5s", "90", "1h30m", "0s"),
            eval_every=Int("1", "2"), patience=Int("1", "2"), sample_every=Int("1"),
            out=Paths(("@new/run", *(f"@new/{k}" for k in NAMES), "@run", "@bi", *RUN_NAMED[:3], "@corpus",
                   "@nodir/run"), "@new/run"),
            resume=Paths(("@copy", "@copybi", "@emptydir", "@missing", "@corpus", "@garbage", "@broken/latest.npz"),
                     "@copy"),
            init_from=Paths(("@run/latest.npz", "@run", "@bi", "@garbage", "@corpus", "@missing", "@broken"),
                        "@run/latest.npz"),
            workers=Int("1", "2"), threads=Int("1", "2"),
        ),
    ),
    "sample": Command(
        args={"CKPT": Paths(CKPT, "@run")},
        base=_o(length="20"),
        options=_o(
            length=Int("0", "1", "50", cap=50), temperature=Float("0", "0.8", "1e-9", "100"), top_k=Int("1", "5"),
            top_p=Float("1e-9", "0.5", "1"), prime=Text("The ", "", "Zebra€", "a"), seed=Int("0", "7"),
            num_samples=Int("1", "2", "300", cap=300),  # streamed in batches: its cost is its value, like --length
            stop=Text("e", " ", "The"), threads=Int("1", "2"),
        ),
    ),
    "eval": Command(
        args={"CKPT": Paths(CKPT, "@run"), "FILE": Paths(TEXT_FILE, "@corpus")},
        options=_o(json=FLAG, threads=Int("1", "2")),
    ),
    "fill": Command(
        args={"CKPT": Paths(CKPT, "@run", "@bi"), "TEXT": Text("The c_t sat", "_", "__", "The _")},
        options=_o(mask=Text("_", "?", "ab"), temperature=Float("0", "0.8"), top_k=Int("1", "3"), seed=Int("0", "3"),
                   json=FLAG),
    ),
    "inspect": Command(
        args={"CKPT": Paths(CKPT, "@run", "@bi")},
        base=_o(text="The cat sat on the mat.", rows="5", heat_chars="40", html="@new/page.html"),
        instead={"--file": _o(rows="5", heat_chars="40", html="@new/page.html")},
        options=_o(
            text=Text("The cat", "a"), file=Paths(TEXT_FILE, "@corpus"), max_chars=Int("1", "100"),
            warmup=Text("The ", ""), warmup_chars=Int("0", "3"), dir=Text("fwd", "bwd"), layer=Int("0", "-1"),
            units=Text("0", "0,1,2", "15", "3, 4"),
            top_units=Int("1", "3"), rank_by=Text("variance", "saturation", "mean"), quantity=Text("c", "h", "i"),
            quantities=Text("i,f,o", "h"), top_k=Int("1", "3"), start=Int("0", "5"), rows=Int("0", "5"),
            heat_chars=Int("0", "40"),
            probe=Text("quotes", "brackets", "line-position", "indent", "regex:a", "regex:(", "regex:"),
            params=FLAG, html=Paths(OUT_FILE, "@new/page.html"), export=Paths(OUT_FILE, "@new/t.npz"),
            csv=Paths(OUT_FILE, "@new/t.csv"), json=FLAG, threads=Int("1", "2"),
        ),
    ),
    "gradcheck": Command(
        args={"CKPT": Paths(CKPT, "@none", "@run")},
        base=_o(samples="2"),
        options=_o(
            cell=Text(*CELL_TYPES), layers=Int("1", "2"), direction=Text("fwd", "bi"), hidden=Int("1", "3"),
            embed=Int("1", "2"), vocab=Int("2", "3"), batch=Int("1", "2"), seq_len=Int("1", "2"), samples=Int("1", "3"),
            seed=Int("0", "5"), json=FLAG,
        ),
    ),
    "plot": Command(
        args={"RUNS": Paths(("@run", "@bi", "@broken", *RUN_NAMED, "@missing", "@corpus", "@emptydir", "@root"),
                        "@run", "@bi")},
        base=_o(out="@new/chart.html"),
        options=_o(x=Text("step", "time"), out=Paths(OUT_FILE, "@new/chart.html"), width=Int("30", "80", "200"),
                   height=Int("6", "16", "40"), y=Text("loss", "grad-norm")),
    ),
    "runs": Command(
        args={"DIRECTORY": Paths(("@runs", "@root", "@run", "@missing", "@corpus", "@files"), "@runs")},
        options=_o(json=FLAG),
    ),
    "info": Command(args={}, options=_o(json=FLAG)),
    "memory": Command(
        args={"CKPT": Paths(CKPT, "@run", "@bi")},
        base=_o(text="The cat sat on the mat.", max_distance="5"),
        instead={"--file": _o(max_distance="5", max_chars="200")},
        options=_o(text=Text("The cat", "ab"), file=Paths(TEXT_FILE, "@corpus"), max_chars=Int("2", "50", cap=400),
                   max_distance=Int("1", "5", cap=60), json=FLAG, out=Paths(OUT_FILE, "@new/m.svg", "@new/m.html"),
                   threads=Int("1", "2")),
    ),
}


def _argv(name: str, cmd: Command, args: dict, opts: list[tuple[str, str | None]]) -> list[str]:
    """[name, *arguments, *base options not given, *options]; an option's value None: a flag."""
    argv = [name, *(args.get(a, o.sane[0]) for a, o in cmd.args.items())]
    argv = [a for a in argv if a != "@none"]
    given = [opt.rstrip("=") for opt, _ in opts]  # "--opt=": give it as --opt=value
    base = cmd.base
    for opt in given:
        base = cmd.instead.get(opt, base)
    for opt, value in base.items():
        if opt not in given:
            argv += [opt, value]
    for opt, value in opts:
        argv += [opt] if value is None else [opt, value] if not opt.endswith("=") else [opt + value]
    return argv


SWEEP = [(name, key) for name, cmd in COMMANDS.items() for key in (*cmd.args, *cmd.options)]


def _sweep_values(name: str, key: str) -> list[str | None]:
    cmd = COMMANDS[name]
    o = cmd.args.get(key) or cmd.options[key]
    return [None] if o.flag else list(dict.fromkeys((*o.pool, *o.sane)))


@st.composite
def command_lines(draw, name: str) -> list[str]:
    """Arguments sane three times in four; up to four options, each sane two times in three, each
    as ``--opt value`` or ``--opt=value``."""
    cmd = COMMANDS[name]
    args = {}
    for a, o in cmd.args.items():
        if draw(st.integers(0, 3)) == 0:
            args[a] = draw(st.sampled_from(o.pool))
        else:
            args[a] = draw(st.sampled_from(o.sane))
    chosen = draw(st.lists(st.sampled_from(sorted(cmd.options)), max_size=4, unique=True))
    opts = []
    for opt in chosen:
        o = cmd.options[opt]
        if o.flag:
            opts.append((opt, None))
            continue
        sane = st.sampled_from(o.sane)
        value = draw(st.one_of(sane, sane, st.sampled_from(o.pool)))
        opts.append((opt + "=" if draw(st.booleans()) else opt, value))
    return _argv(name, cmd, args, opts)


class Hang(BaseException):
    """An example ran past HANG_S (BaseException: no ``except Exception`` in the tool swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise Hang after ``seconds``, and again every quarter second until the block is left (an
    exception raised where Python cannot pass it on, in a gc callback, is dropped)."""
    if not hasattr(signal, "setitimer"):
        yield
        return
    armed = [True]

    def on_alarm(signum, frame):
        if armed[0]:
            raise Hang(f"still running after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.25)
    try:
        yield armed
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def memory_limit(extra: int):
    """Address space for at most ``extra`` more bytes (Linux): a value the tool should refuse fails
    with MemoryError instead of taking the machine's memory before HANG_S is up."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = used + extra if hard == resource.RLIM_INFINITY else min(used + extra, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _write_bytes_name(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    with open(os.fsencode(path), "wb") as f:  # through the bytes: a name that is not UTF-8 too
        f.write(data)
    return path


class World:
    """The shared runs and inputs (never to change), and a fresh scratch directory per example."""

    def __init__(self, root: Path):
        self.root = root
        self.runs = root / "runs"
        self.files = root / "files"
        self.scratch = root / "scratch"
        self.n = 0

    def snapshot(self) -> dict[bytes, tuple[bytes, int]]:
        """Every file's bytes and mtime, outside the scratch directories."""
        snap = {}
        top = os.fsencode(self.root)
        for folder, dirs, files in os.walk(top):
            if folder == top:
                dirs[:] = [d for d in dirs if d != b"scratch"]
            for f in files:
                p = os.path.join(folder, f)
                with open(p, "rb") as fh:
                    snap[p] = (fh.read(), os.stat(p, follow_symlinks=False).st_mtime_ns)
        return snap

    def fresh(self) -> Path:
        self.n += 1
        d = self.scratch / f"ex{self.n}"
        d.mkdir(parents=True)
        return d

    def resolve(self, token: str, here: Path) -> str:
        """A path token (see CKPT, OUT_FILE) as a real path; anything else as it is."""
        opt, eq, value = token.partition("=")
        if eq and opt.startswith("--") and value.startswith("@"):
            return f"{opt}={self.resolve(value, here)}"
        if not token.startswith("@"):
            return token
        kind, _, key = token[1:].partition("/")
        stem, dot, suffix = key.partition(".")
        name = NAMES.get(stem, stem) + dot + suffix
        if kind in ("copy", "copybi"):  # a run of its own to resume
            dst = here / kind
            shutil.copytree(self.runs / ("fwd" if kind == "copy" else "bi"), dst)
            return str(dst)
        if kind == "new":
            return str(here / name)
        if kind == "nodir":
            return str(here / "no" / "such" / name)
        if kind == "runs" and key:
            return str(self.runs / name)
        if kind == "files" and key:
            return str(self.files / (name + ".txt"))
        fixed = {"run": self.runs / "fwd", "bi": self.runs / "bi", "broken": self.runs / "broken",
                 "runs": self.runs, "root": self.root, "files": self.files, "corpus": self.root / "corpus.txt",
                 "hostile_text": self.root / "hostile.txt", "garbage": self.root / "garbage.npz",
                 "empty": self.root / "empty.txt", "binary": self.root / "binary.txt",
                 "emptydir": self.root / "emptydir", "missing": self.root / "nope.txt"}[kind]
        return str(fixed / key if key else fixed)

    def fixture_runs(self) -> list[Path]:
        return [Path(os.fsdecode(p)) for p in os.scandir(os.fsencode(self.runs)) if p.is_dir()]


@contextlib.contextmanager
def _one_click_command():
    """CliRunner rebuilds the click command from the Typer app on every invoke (most of an example's
    time when the value is refused at once); build it once for this module."""
    build = getattr(typer.testing, "_get_command", None)
    if build is None:  # another Typer: no shortcut, just slower
        yield
        return
    cache = {}

    def get_command(typer_app):
        if id(typer_app) not in cache:
            cache[id(typer_app)] = build(typer_app)
        return cache[id(typer_app)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", get_command)
        yield


def _train(argv: list[str]) -> None:
    r = runner.invoke(app, argv, env={"LSTMGEN_DEBUG": None})
    assert r.exit_code == 0, (argv, r.output, r.exception)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two tiny float32 runs (left to right, bidirectional), copies of the first under hostile names,
    a run with a broken metrics.jsonl, and input files with hostile names and contents."""
    w = World(tmp_path_factory.mktemp("fuzz"))
    text = prose(3000, seed=1)
    corpus = w.root / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    tiny = ["--hidden", "16", "--embed", "8", "--max-steps", "3", "--batch-size", "4", "--seq-len", "8",
            "--eval-every", "1", "--workers", "1", "--dtype", "float32", "--seed", "1"]
    _train(["train", str(corpus), "--out", str(w.runs / "fwd"), *tiny])
    _train(["train", str(corpus), "--out", str(w.runs / "bi"), *tiny, "--direction", "bi"])
    for name in NAMES.values():
        dst = w.runs / name
        with contextlib.suppress(OSError):  # a name this file system refuses: that token is a missing path
            os.makedirs(os.fsencode(dst))
            for f in ("latest.npz", "metrics.jsonl"):
                _write_bytes_name(dst, f, (w.runs / "fwd" / f).read_bytes())
    broken = w.runs / "broken"
    broken.mkdir()
    (broken / "metrics.jsonl").write_text(
        '{"step": 1, "epoch": 0, "train_loss": 4.1, "val_loss": 4.2, "lr": 0.001, "chars_per_sec": 10, '
        '"elapsed_s": 0.1}\n{"step": 2, "train_loss": NaN, "val_loss": Infinity, "elapsed_s": -1}\n'
        '{"step": 1e308, "train_loss": 1e308, "val_loss": -Infinity}\nnot json\n[]\n{"step": "3"}\n{"ste',
        encoding="utf-8")
    (broken / "latest.npz").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 2)
    w.files.mkdir()
    for name in NAMES.values():
        with contextlib.suppress(OSError):
            _write_bytes_name(w.files, name + ".txt", text[:800].encode())
    hostile = "".join(TEXTS + list(NAMES.values())).replace(NAMES["bytes"], "").replace("\udcff", "")
    (w.root / "hostile.txt").write_text(text[:400] + hostile, encoding="utf-8")
    (w.root / "garbage.npz").write_bytes(os.urandom(300))
    (w.root / "empty.txt").write_text("")
    (w.root / "binary.txt").write_bytes(b"abc\xff\xfedef")
    (w.root / "emptydir").mkdir()
    w.scratch.mkdir()
    with _one_click_command():
        yield w


SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour codes (FORCE_COLOR in CI); the hostile inputs carry none


def _check_page(path: Path, command: str) -> list[str]:
    """A page written from hostile names and text keeps its markup."""
    page = path.read_text(encoding="utf-8")
    if command == "plot":  # a chart: no script or image element at all
        low = page.lower()
        return [f"{path.name}: markup from a name in the chart"] if "<script" in low or "<img" in low else []
    template = resources.files("lstmgen").joinpath("explorer.html").read_text(encoding="utf-8")
    pattern = "".join({"__TITLE__": "[^<>]*", "__SUMMARY__": "[^<>]*", "__DATA__": "(?P<data>.*?)"}.get(p)
                      or re.escape(p) for p in re.split(r"(__TITLE__|__SUMMARY__|__DATA__)", template))
    m = re.fullmatch(pattern, page, flags=re.DOTALL)
    if m is None:
        return [f"{path.name}: the explorer page lost the template's structure (markup injected)"]
    data, found = m.group("data"), []
    if "<!--" in data or "</script" in data.lower():
        found.append(f"{path.name}: the trace JSON holds '<!--' or '</script' (it can end its script early)")
    if len(data) > 40 and page.count(data) != 1:
        found.append(f"{path.name}: the trace JSON is in the page {page.count(data)} times (a placeholder in "
                     "the title or summary was filled too)")
    return found


def _values_of(opt: str, tokens: list[str], argv: list[str]):
    """The (resolved) values given to ``opt``, as ``opt value`` or ``opt=value``."""
    for i, t in enumerate(tokens):
        if t == opt and i + 1 < len(tokens):
            yield argv[i + 1]
        elif t.startswith(opt + "="):
            yield argv[i].partition("=")[2]


def problems_of(world: World, tokens: list[str]) -> tuple[list[str], list[str], float]:
    """Run one command line in a fresh directory: the rules it broke, its real argv, its seconds."""
    here = world.fresh()
    argv = [world.resolve(t, here) for t in tokens]
    before = world.snapshot()
    threads = get_threads() if any(t.startswith("--threads") for t in tokens) else None
    cwd, streams = os.getcwd(), (sys.stdin, sys.stdout, sys.stderr)
    os.chdir(here)  # relative names (and the default runs/ folder) land in the fresh directory
    t0 = time.perf_counter()
    try:
        with time_limit(HANG_S) as armed, memory_limit(MEMORY):
            try:
                r = runner.invoke(app, argv, env={"LSTMGEN_DEBUG": None})
            except Hang as e:
                armed[0] = False
                return [f"hang: {e}"], argv, time.perf_counter() - t0
    finally:
        os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = streams  # (CliRunner's own restoring may have been cut short)
        if threads is not None:
            set_threads(threads)
    elapsed = time.perf_counter() - t0
    found = []
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        tb = traceback.format_exception(r.exception)
        found.append("exception: " + "".join(tb[-3:]).strip())
    if r.exit_code not in (0, 1, 2):
        found.append(f"exit code {r.exit_code}")
    if "Traceback" in r.output:
        found.append("a traceback in the output")
    if r.exit_code in (1, 2):
        lines = [ln for ln in r.stderr.split("\n") if ln.strip()]
        if len(lines) > MAX_ERR_LINES:
            found.append(f"{len(lines)} lines on stderr for an error")
        shown = SGR.sub("", r.output)
        if "\x1b" in shown or "\x07" in shown:
            found.append("a raw ESC or BEL character in an error's output")
    after = world.snapshot()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        rel = [os.fsdecode(os.path.relpath(k, os.fsencode(world.root))) for k in changed]
        found.append(f"changed shared files: {rel}")
    if r.exit_code == 0 and argv[0] in ("inspect", "plot"):
        for page in map(Path, _values_of("--html" if argv[0] == "inspect" else "--out", tokens, argv)):
            if page.suffix.lower() in (".html", ".htm", ".svg") and page.is_file():
                found += _check_page(page, argv[0])
    if found:
        found.append(f"exit {r.exit_code}; output:\n{r.output[-1500:]}")
    return found, argv, elapsed


def _fuzz(world: World, tokens: list[str]) -> None:
    found, argv, _ = problems_of(world, tokens)
    assert not found, f"lstmgen {argv!r}:\n" + "\n".join(found)


SWEEP_MAX = 40
FUZZ = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])


@pytest.mark.parametrize("name, key", SWEEP, ids=[f"{n}-{k}" for n, k in SWEEP])
def test_fuzz_option(world, name, key):
    """Every value of one option's (or argument's) pool, the rest of the command line sane."""
    cmd = COMMANDS[name]

    values = _sweep_values(name, key)
    assert len(values) <= SWEEP_MAX, "a pool outgrew max_examples: the sweep would leave values out"

    @settings(max_examples=SWEEP_MAX, **FUZZ)  # ≥ the pool: hypothesis tries every value, once each
    @given(value=st.sampled_from(values))
    def fuzz(value):
        if key in cmd.args:
            _fuzz(world, _argv(name, cmd, {key: value}, []))
        else:
            _fuzz(world, _argv(name, cmd, {}, [(key, value)]))

    fuzz()


EXAMPLES = {"train": 40, "sample": 40, "eval": 15, "fill": 25, "inspect": 50, "gradcheck": 30, "plot": 25,
            "runs": 10, "info": 5, "memory": 25}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_fuzz_command(world, name):
    """Random subsets of a command's options, sane and hostile values mixed."""

    @settings(max_examples=EXAMPLES[name], **FUZZ)
    @given(tokens=command_lines(name))
    def fuzz(tokens):
        _fuzz(world, tokens)

    fuzz()


@settings(max_examples=25, **FUZZ)
@given(tokens=st.lists(st.sampled_from(ALL + ["--version", "--help", "-h"]), min_size=1, max_size=3))
def test_fuzz_top_level(world, tokens):
    """The app itself: --version, --help, unknown commands and options (never a real command: it
    would train on the bundled corpus with the default sizes)."""
    _fuzz(world, tokens)
