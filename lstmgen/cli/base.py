"""The CLI's shared pieces: the Typer app, the one error boundary, consoles, option helpers."""


from __future__ import annotations

import contextvars
import functools
import math
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from lstmgen import checkpoint as ckpt_io
from lstmgen.errors import ConfigError, LstmgenError
from lstmgen.heap import keep_freed_memory
from lstmgen.model import CharLM
from lstmgen.terminal import shown
from lstmgen.text import Vocab, named_corpus, read_text
from lstmgen.threads import set_threads
from lstmgen.version import __version__


class _OneLineErrors(TyperGroup):
    """Usage errors (bad option values, missing arguments) as one line on stderr, exit 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as e:  # Click's exceptions (vendored by newer Typer): duck-typed
            if type(e).__name__ == "Abort":
                err.print("[bold red]interrupted[/]")
                sys.exit(130)
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            ctx, msg = getattr(e, "ctx", None), e.format_message()
            if msg:  # (no arguments at all: the help was shown, nothing to add)
                value = _given_value(getattr(e, "param", None), kwargs.get("args", args[0] if args else None))
                if value is not None:
                    msg = msg.replace(":", f" (got {value!r}):", 1)
                where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                err.print(f"[bold red]error:[/] {safe(msg)}{safe(where)}")
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


def _given_value(param, argv) -> str | None:
    """What the user typed for an option that failed validation (to name it in the error)."""
    opts = getattr(param, "opts", None)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not opts:
        return None
    for n, tok in enumerate(argv):
        for o in opts:
            if tok == o and n + 1 < len(argv):
                return argv[n + 1]
            if tok.startswith(o + "="):
                return tok[len(o) + 1 :]
    return None


def _names_not_types() -> None:
    """Recent Typer prints a Python type beside each parameter in --help (``<bool>`` beside a flag,
    ``<list[Path]>`` beside the corpus); our metavars (N, FILE, CKPT, …) say what to type, so the
    type column is left empty for flags and arguments. Older Typer has no such column: nothing to do."""
    core = typer.core
    for cls in (getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)):
        shown_type = getattr(cls, "display_type_rich", None)
        if shown_type is None or getattr(shown_type, "_lstmgen", False):
            continue

        def display_type_rich(self, ctx, _shown_type=shown_type):
            if getattr(self, "is_flag", False) or getattr(self, "param_type_name", "") == "argument":
                return None
            return _shown_type(self, ctx)

        display_type_rich._lstmgen = True
        cls.display_type_rich = display_type_rich


_names_not_types()
app = typer.Typer(
    cls=_OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    help="Character-level recurrent language models (LSTM, GRU, RNN, peephole, CIFG, Jordan; left-to-right or "
         "bidirectional) in NumPy.",
)
class _ProductConsole(Console):
    """stdout: when the reader has gone (``lstmgen inspect RUN | head``), stop quietly with exit 0 as
    for every other command, not rich's own silent exit 1."""

    def on_broken_pipe(self) -> None:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        raise BrokenPipeError


err = Console(stderr=True, highlight=False, soft_wrap=True)
out = _ProductConsole(highlight=False)
LN2 = math.log(2)


def safe(value: object) -> str:
    """A user-controlled string (a file or run name, an option value, a message carrying one) for rich
    markup on a terminal: control characters made visible (:func:`lstmgen.terminal.shown`), markup
    escaped."""
    return escape(shown(value))


RAISE_ERRORS = contextvars.ContextVar("lstmgen_raise_errors", default=False)  # the Python API: raise, not exit


def _raising() -> bool:
    """Errors go up as exceptions instead of one line: LSTMGEN_DEBUG=1 (a traceback), or the Python API."""
    return os.environ.get("LSTMGEN_DEBUG") == "1" or RAISE_ERRORS.get()


def boundary(fn):
    """Turn lstmgen's errors (and Ctrl-C outside training) into one red line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite results are checked
                return fn(*args, **kwargs)
        except LstmgenError as e:
            if _raising():
                raise
            err.print(f"[bold red]error:[/] {safe(e)}")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except MemoryError as e:  # NumPy's too: "Unable to allocate 327 TiB for an array …"
            if _raising():
                raise
            why = str(e).split(" for an array")[0] if str(e) else "out of memory"
            err.print(f"[bold red]error:[/] {safe(why)}: choose a smaller model, batch or text")
            raise typer.Exit(1) from None
        except BrokenPipeError:  # `lstmgen sample ... | head`: the reader left; not an error
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            except OSError:
                pass
            raise typer.Exit(0) from None
        except OSError as e:  # writing the product failed (stdout on a full disk, a closed terminal)
            if _raising():
                raise
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- (the exit's flush would fail again)
                err.print(f"[bold red]error:[/] {safe(e.strerror or e)}"
                          + (f": {safe(e.filename)}" if e.filename else " (writing the output)"))
            except OSError:
                pass
            raise typer.Exit(1) from None

    return wrapper


def _version(value: bool):
    if value:
        print(f"lstmgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
):
    """Train on any UTF-8 text file, then sample, evaluate and inspect the model."""


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str | None) -> float | None:
    """'90s', '10m', '1h', '1h30m', '45' (seconds) → seconds."""
    if text is None:
        return None
    m = _DURATION.match(text)
    if not text.strip() or not m or not any(m.groups()):
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 10m or 1h", param_hint="--max-time")
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    total = h * 3600 + mnt * 60 + s
    if total <= 0:
        raise typer.BadParameter(f"{text!r} must be longer than zero", param_hint="--max-time")
    return total


P_MODEL = "Model (fixed for the life of a run)"
P_OPT = "Optimisation"
P_DATA = "Data"
P_RUN = "Stopping and reporting"

Threads = Annotated[int | None, typer.Option(metavar="N", min=1, max=1024,
                                             help="BLAS threads (default: OPENBLAS_NUM_THREADS / "
                                             "OMP_NUM_THREADS, else all cores).", show_default=False)]


def use_threads(n: int | None) -> None:
    if n is not None and not set_threads(n):
        err.print("[yellow]warning:[/] could not set the BLAS thread count here; set OPENBLAS_NUM_THREADS "
                  "(or OMP_NUM_THREADS) before starting lstmgen")


def check_choice(flag: str, value: str | None, choices) -> None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=flag)


def given_text(text: str | None, file: Path | None, what: str) -> tuple[str | None, str | None]:
    """--text or --file (@default, @structured: a bundled corpus): (the text, where it came from), or
    (None, None) when neither was given; both at once is a usage error."""
    if text is not None and file is not None:
        raise ConfigError("--text and --file cannot be combined")
    if file is not None:
        file = named_corpus(file)
        return read_text(file, what), str(file)
    return (text, "--text") if text is not None else (None, None)


def load_model(path: Path) -> tuple[CharLM, Vocab, ckpt_io.Checkpoint]:
    ck = ckpt_io.load(path)
    return CharLM(ck.config, params=ck.params), Vocab(ck.meta["vocab"]), ck


def main() -> None:
    """The ``lstmgen`` program (not ``app`` called from Python: the allocator setting is the program's)."""
    keep_freed_memory()  # a step's large arrays reuse the last step's pages (lstmgen.heap)
    app()

