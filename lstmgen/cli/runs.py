"""lstmgen plot and lstmgen runs: how runs went, as curves and as a table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from lstmgen import chart
from lstmgen.cli.base import app, boundary, check_choice, err, out, safe
from lstmgen.errors import ConfigError, LstmgenError
from lstmgen.runs import Y, curves, find_runs, is_run, sort_key, summarise
from lstmgen.terminal import shown

STYLES = ["blue", "red", "green", "magenta", "dark_orange", "cyan", "yellow", "bright_black"]


@app.command(epilog="Example: lstmgen plot runs/small runs/big --x time --out curves.svg")
@boundary
def plot(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN",
                                               help="Run directories (several: one chart, one colour each).")],
    x: Annotated[str, typer.Option("--x", metavar="NAME",
                                   help="Horizontal axis: step or time (seconds of training).")] = "step",
    out_file: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Also write the chart to FILE.svg or "
                                                  "FILE.html.")] = None,
    width: Annotated[int | None, typer.Option(metavar="N",
                                              min=30, max=1000,
                                              help="Chart width in characters (default: the terminal's).",
                                              show_default=False)] = None,
    height: Annotated[int, typer.Option(metavar="N", min=6, max=200, help="Chart height in lines.")] = 16,
    y: Annotated[str, typer.Option("--y", metavar="NAME", help="Vertical axis: loss (bits per character) or "
                                   "grad-norm (the global gradient norm before --grad-clip).")] = "loss",
):
    """Train and validation loss (bits per character) of one or more runs, in the terminal.

    Dotted lines are the training loss (as logged), ● the validation loss at each evaluation.
    --y grad-norm draws the gradient's global norm before clipping instead: a norm that climbs
    steeply is a gradient about to explode (--grad-clip cuts it; training shows the share clipped).
    With --out the same chart is written as a picture (SVG, or an HTML page holding it).
    """
    if x not in ("step", "time"):
        raise typer.BadParameter(f"{x!r} is not one of step, time", param_hint="--x")
    check_choice("--y", y, tuple(Y))
    if out_file is not None and out_file.suffix.lower() not in (".svg", ".html", ".htm"):
        raise ConfigError(f"--out {out_file}: write a .svg or .html file")
    lines = []
    for k, run in enumerate(runs):
        if not is_run(run):
            raise LstmgenError(f"{run} is not a run directory (no metrics.jsonl or latest.npz)")
        found = curves(run, x, label=_label(run, runs), group=k, y=y)
        if not found:
            err.print(f"[yellow]warning:[/] {safe(run)} has no {'losses' if y == 'loss' else 'gradient norms'} "
                      "logged yet")
        lines += found
    if not lines:
        raise LstmgenError(f"nothing to plot: no run has logged a {'loss' if y == 'loss' else 'gradient norm'} yet"
                           + (" (runs from before lstmgen logged grad_norm)" if y != "loss" else ""))
    x_label = "step" if x == "step" else "training time (s)"
    text = grid_text(lines, width or max(30, min(110, out.width - 10)), height)
    text.append(f"y: {'bits per character' if y == 'loss' else Y[y]}, x: {x_label}   ", style="dim")
    drawn = {c.group for c in lines}
    for k, run in enumerate(runs):
        if k in drawn:
            text.append(f"■ {_label(run, runs)}   ", style=STYLES[k % len(STYLES)])
    text.append("(· train, ● validation)" if y == "loss" else "", style="dim")
    out.print(text)
    if out_file is not None:
        title = ("Loss curves: " if y == "loss" else "Gradient norms: ") + ", ".join(_label(r, runs) for r in runs)
        write_picture(out_file, chart.svg(lines, title, x_label, y_label=Y[y]), title)


def write_picture(path: Path, svg: str, title: str) -> None:
    """An SVG chart to FILE.svg, or FILE.html as a page holding it."""
    body = chart.html_page(svg, title) if path.suffix.lower() in (".html", ".htm") else svg + "\n"
    try:
        path.write_text(body, encoding="utf-8")
    except OSError as e:
        raise LstmgenError(f"cannot write {path}: {e.strerror or e}") from e
    err.print(f"wrote {safe(path)} ({path.stat().st_size / 1024:.1f} KB)")


def grid_text(lines: list, width: int, height: int, y_label=chart._fmt) -> Text:
    """A chart for the terminal (``chart.grid``) with its axes, each run group in its colour."""
    cells, labels, axis = chart.grid(lines, width=width, height=height, y_label=y_label)
    pad = max(len(s) for s in labels)
    text = Text()
    for label, row in zip(labels, cells):
        text.append(f"{label:>{pad}} │", style="dim")
        for ch, g in row:
            text.append(ch, style=STYLES[g % len(STYLES)] if g >= 0 else None)
        text.append("\n")
    text.append(" " * pad + " └" + "─" * width + "\n", style="dim")
    text.append(" " * (pad + 2) + axis + "\n", style="dim")
    return text


def _label(run: Path, runs: list[Path]) -> str:
    """A run's short name (its folder's name, or more of its path when two runs share a name), as shown
    in the terminal and the picture: control characters made visible."""
    names = [r.resolve().name for r in runs]
    return shown(run.resolve().name if names.count(run.resolve().name) == 1 else run)


@app.command(name="runs", epilog="Example: lstmgen runs runs/ --json")
@boundary
def runs_cmd(
    directory: Annotated[Path, typer.Argument(metavar="DIR",
                                              help="Where the run directories are (searched below).")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print a JSON list on stdout.")] = False,
):
    """One row per run directory: model, size, steps, best validation loss, speed, corpus.

    Sorted by best validation loss (lowest first); runs that were never validated come last.
    """
    found = sorted((summarise(r) for r in find_runs(directory)), key=sort_key)
    if as_json:
        print(json.dumps([s.to_json() for s in found], indent=1))
        return
    if not found:
        err.print(f"no run directories under {safe(directory)}")
        return
    table = Table(title=f"runs under {safe(directory)}, best first", title_justify="left", caption_justify="left")
    table.box, table.pad_edge = box.SIMPLE_HEAD, False
    now = time.time()
    rows = []
    for s in found:
        model = s.model if s.model else f"[yellow]{safe(s.problem or '?')}[/]"
        rows.append((safe(_shown_path(Path(s.run), directory)), model, f"{s.params:,}" if s.params else "-",
                     _n(s.step), f"{s.best_val_bpc:.3f}" if s.best_val_bpc is not None else "-",
                     f"{s.chars_per_sec:,.0f}" if s.chars_per_sec else "-", safe(s.corpus or "-"),
                     _ago(now - s.modified) if s.modified else "-"))
    columns = [("run", "left"), ("model", "left"), ("params", "right"), ("steps", "right"), ("val bpc", "right"),
               ("c/s", "right"), ("corpus", "left"), ("age", "right")]
    natural = [max([len(c)] + [len(Text.from_markup(r[k]).plain) for r in rows]) for k, (c, _) in enumerate(columns)]
    # a narrow terminal: leave out c/s, then age, then params, until the corpus has room for 16
    # characters, what it still lacks it gives way (cut with …); narrower still: no corpus column,
    # and the run names cut at their start
    keep, corpus_k = list(range(len(columns))), 6
    natural[0] = min(natural[0], 32)  # a long run name: its end shows

    def left_for(k: int) -> int:  # the width column k can have beside the others (padding, rules)
        return out.width - (3 * len(keep) - 1) - sum(natural[j] for j in keep if j != k)

    for drop in (5, 7, 2, corpus_k, None):
        if left_for(corpus_k) >= min(natural[corpus_k], 16) or drop is None:
            break
        keep.remove(drop)
    widths = {k: natural[k] for k in keep}
    if corpus_k in keep:
        widths[corpus_k] = max(6, min(left_for(corpus_k), natural[corpus_k]))
    else:
        widths[0] = max(8, min(left_for(0), natural[0]))
    for k in keep:
        table.add_column(columns[k][0], justify=columns[k][1], no_wrap=True, min_width=widths[k], max_width=widths[k])
    for r in rows:
        table.add_row(*(_cut(r[k], widths[k]) if k == corpus_k else
                        _tail(r[k], widths[k]) if k == 0 else r[k] for k in keep))
    notes = {4: "val bpc: best validation loss in bits per character", 5: "c/s: training characters per second "
             "(last logged)", 7: "age: since the last checkpoint"}  # only the columns shown
    table.caption = "; ".join(n for k, n in notes.items() if k in keep)
    out.print(table)


def _tail(name: str, width: int) -> Text:
    """A run path (markup) cut at its start when too long (its end tells runs apart): "…long_name"."""
    text = Text.from_markup(name)
    return text if len(text) <= width else Text.assemble("…", text[len(text) - width + 1 :])


def _cut(markup: str, width: int) -> Text:
    text = Text.from_markup(markup)
    text.truncate(width, overflow="ellipsis")
    return text


def _shown_path(run: Path, root: Path) -> str:
    """A run's path as the table shows it: relative to the directory listed, when it is below it."""
    try:
        return str(run.relative_to(root)) if run != root else str(run)
    except ValueError:
        return str(run)


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return "just now"
