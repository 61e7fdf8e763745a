"""lstmgen memory: how far back each prediction reaches — the vanishing gradient, measured."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lstmgen import chart, probe
from lstmgen.cli.base import Threads, app, boundary, err, given_text, load_model, out, safe, use_threads
from lstmgen.cli.runs import STYLES, grid_text, write_picture
from lstmgen.errors import ConfigError, LstmgenError
from lstmgen.memory import report
from lstmgen.runs import Curve

SHOWN_AT = (1, 5, 10, 20, 50)


@app.command(epilog="Example: lstmgen memory runs/rnn runs/gru runs/lstm --out memory.svg")
@boundary
def memory(
    ckpts: Annotated[list[Path], typer.Argument(metavar="CKPT", help="Checkpoints or run directories (several: "
                                                "one curve each).")],
    text: Annotated[str | None, typer.Option(metavar="TEXT", help="The text the models read.")] = None,
    file: Annotated[Path | None, typer.Option(metavar="FILE", help="Read the text from this UTF-8 file "
                                              "(@structured, @default: a bundled corpus).")] = None,
    max_chars: Annotated[int, typer.Option(metavar="N", min=2, max=100_000,
                                           help="Use at most this many characters of the text.")] = 2000,
    max_distance: Annotated[int, typer.Option(metavar="D", min=1, max=1000,
                                              help="How far back (and, bidirectional, ahead) to measure.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Also write the chart to FILE.svg "
                                                  "or FILE.html.")] = None,
    threads: Threads = None,
):
    """How much each character read still matters to a prediction, by how far back it is.

    The influence of character s on the prediction made after reading character t is the size of
    the gradient of ln p(next character) with respect to the vector the network read for s:
    ‖∂ ln p(x_{t+1} | x_≤t) / ∂ e_s‖. Per distance d = t − s, the median over the text. A plain RNN's
    influence falls by a factor at every step back (the vanishing gradient); an LSTM's cell state
    and a GRU's update gate keep it up for longer. The span is the first distance where the
    influence drops below 1 % of the nearest one. Each model reads the text as eval does (from a
    zero state, without dropout); without --text or --file, the text inspect shows by default.
    """
    use_threads(threads)
    if out_file is not None and out_file.suffix.lower() not in (".svg", ".html", ".htm"):
        raise ConfigError(f"--out {out_file}: write a .svg or .html file")
    if out_file is not None and not out_file.resolve().parent.is_dir():  # before the work, not after
        raise LstmgenError(f"cannot write {out_file}: no directory {out_file.resolve().parent}")
    text, given_source = given_text(text, file, "memory")
    results = []
    for ck_path in ckpts:
        model, vocab, ck = load_model(ck_path)
        used, source = (text, given_source) if text is not None else \
            probe.default_text(ck.meta, model, vocab, n_chars=max_chars)
        used = used[:max_chars]
        ids = vocab.encode(used, f"the text for {ck_path}")
        results.append({**report(model, ids, max_distance, str(ck_path)), "source": source})
        if not as_json:
            err.print(f"{safe(ck_path)}: read {len(used):,} characters of {safe(source)}")
    if as_json:
        print(json.dumps({"models": results}, allow_nan=False))
    else:
        _show(results, max_distance)
    if out_file is not None:
        _write_chart(results, out_file)


def _curves(results: list[dict]) -> list[Curve]:
    """log10 of each influence curve against the distance (zeros, unmeasured distances left out)."""
    lines = []
    for k, r in enumerate(results):
        bi = "influence_right" in r
        sides = [("influence", " ←" if bi else "")] + ([("influence_right", " →")] if bi else [])
        for key, arrow in sides:
            c = Curve(f"{r['model']}{arrow}", kind="val" if arrow == " →" else "train", group=k)
            for d, v in enumerate(r[key]):
                if v is not None and v > 0:
                    c.x.append(float(d))
                    c.y.append(math.log10(v))
            if c.x:
                lines.append(c)
    return lines


def _show(results: list[dict], D: int) -> None:
    lines = _curves(results)
    if lines:
        pic = grid_text(lines, max(30, min(100, out.width - 12)), 14, y_label=chart.log_label)
        pic.append("y: influence on the prediction (log scale), x: distance d in characters   ", style="dim")
        for k, r in enumerate(results):
            pic.append(f"■ {r['model']}   ", style=STYLES[k % len(STYLES)])
        if any("influence_right" in r for r in results):
            pic.append("(· before the character, ● after it)", style="dim")
        out.print(pic)
    at = [d for d in SHOWN_AT if d <= D]
    table = Table(title="influence of the character d back, median over the text", title_justify="left")
    for col in ["checkpoint", "model", "span", *(f"d={d}" for d in at)]:
        table.add_column(col, justify="left" if col in ("checkpoint", "model") else "right")
    for r in results:
        for key, sp, label in (("influence", "span", r["model"]), ("influence_right", "span_right", "  → ahead")):
            if key not in r:
                continue
            values = [r[key][d] for d in at]
            table.add_row(safe(Path(r["checkpoint"]).name) if key == "influence" else "", label,
                          "-" if r[sp] is None else str(r[sp]), *("-" if v is None else f"{v:.3g}" for v in values))
    out.print(table)
    err.print("span: the first distance whose influence is below 1 % of the nearest one's (- : not within "
              f"--max-distance {D}, or the text is shorter)")


def _write_chart(results: list[dict], path: Path) -> None:
    lines = _curves(results)
    if not lines:
        raise LstmgenError("nothing to draw: every influence is zero")
    title = "How far back a prediction reaches: " + ", ".join(r["model"] for r in results)
    write_picture(path, chart.svg(lines, title, "distance d (characters)",
                                  y_label="influence on the prediction (log scale)", y_tick=chart.log_label), title)
