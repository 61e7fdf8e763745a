"""Rendering ``inspect`` for people: rich tables, heat maps, saturation bars, parameter summaries.

Pure presentation of what ``probe.py`` computed: every function returns a rich renderable and
nothing here prints, reads files or touches the model.

Colour scales: sigmoid gates (i, f, o, r, z) run from white at 0 to blue at 1; tanh quantities
(g, n, h, and the cell state c through tanh) use the diverging red (−1) – white (0) – blue (+1)
scale of Karpathy et al. (2015)'s figures.
"""

from __future__ import annotations

import math

import numpy as np
from rich import box
from rich.color import Color
from rich.console import Console, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.style import Style
from rich.table import Table
from rich.text import Text

from lstmgen.probe import SIGMOID, ParamRow, Saturation, Trace, histogram
from lstmgen.probes import ProbeResult
from lstmgen.terminal import shown as shown_text
from lstmgen.terminal import shown_char

RED, WHITE, BLUE = (178, 24, 43), (247, 247, 247), (33, 102, 172)
BARS = " ▁▂▃▄▅▆▇█"
SHOWN = {"\n": "↵", " ": "␣", "\t": "⇥", "\r": "␍"}


def shown(ch: str) -> str:
    """A character as it reads in a table cell: ␣ for space, ↵ for newline, control codes made visible
    as everywhere else (:func:`lstmgen.terminal.shown_char`)."""
    return SHOWN.get(ch) or shown_char(ch)


def _mix(a, b, w: float) -> tuple[int, int, int]:
    return tuple(int(round(x + (y - x) * w)) for x, y in zip(a, b))


def value_style(v: float, q: str) -> Style:
    """Background colour of a value on its quantity's scale, with a readable foreground."""
    if not math.isfinite(v):
        return Style(color="white", bgcolor="black")
    if q in SIGMOID:
        rgb = _mix(WHITE, BLUE, min(1.0, max(0.0, v)))
    else:
        x = math.tanh(v) if q == "c" else min(1.0, max(-1.0, v))
        rgb = _mix(WHITE, BLUE, x) if x >= 0 else _mix(WHITE, RED, -x)
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return Style(color="black" if lum > 140 else "white", bgcolor=Color.from_rgb(*rgb))


def _fmt(v: float, q: str) -> str:
    return f"{v:.2f}" if q in SIGMOID else f"{v:+.2f}"


def gate_table(trace: Trace, chars: str, layer: int, quantities: list[str], units: list[int] | None,
               top_k: int, start: int, rows: int) -> Table:
    """One row per character: the chosen units' values (or the mean over units) of each quantity,
    the model's top-k next-character guesses and the surprisal of the character that came next."""
    T = trace.T
    stop = min(T, start + rows)
    what = "mean over all units" if units is None else "units " + ", ".join(map(str, units))
    table = Table(title=f"layer {layer}: {what}", title_justify="left", header_style="bold", box=None,
                  pad_edge=False, padding=(0, 1))
    table.add_column("t", justify="right", style="dim", no_wrap=True)
    table.add_column("char", justify="center", no_wrap=True)
    layer_q = trace.layers[layer]
    for q in quantities:
        table.add_column(q if units is None or len(units) == 1 else f"{q} ({len(units)})", justify="right",
                         no_wrap=True)
    table.add_column("cloze" if trace.both_sides else "next", justify="center", no_wrap=True)
    table.add_column(f"top {top_k} guesses" if top_k > 1 else "guess", no_wrap=True)
    table.add_column("bits", justify="right", no_wrap=True)
    top_ids, top_p = trace.top_predictions(top_k)
    bits = trace.surprisal_bits()
    for t in range(start, stop):
        cells = [str(t), Text(shown(trace.text[t]), style="bold")]
        for q in quantities:
            vals = layer_q[q][t]
            vals = [float(vals.mean())] if units is None else [float(vals[j]) for j in units]
            cell = Text()
            for n, v in enumerate(vals):
                if n:
                    cell.append(" ")
                cell.append(_fmt(v, q), style=value_style(v, q))
            cells.append(cell)
        nxt = trace.target(t)
        guesses = Text()
        for n in range(top_ids.shape[1]):
            cid = int(top_ids[t, n])
            style = "bold green" if nxt is not None and cid == nxt else ""
            if n:
                guesses.append("  ")
            guesses.append(shown(chars[cid]), style=style or "bold")
            guesses.append(f" {top_p[t, n]:.2f}", style=style or "dim")
        if nxt is None:
            cells += ["", guesses, ""]
        else:
            hit = int(top_ids[t, 0]) == nxt
            cells += [Text(shown(chars[nxt]), style="green" if hit else "bold red"), guesses,
                      Text(f"{bits[t]:.2f}", style="" if hit else "red")]
        table.add_row(*cells)
    return table


def natural_width(renderable) -> int:
    """The width a renderable takes when nothing constrains it."""
    console = Console(width=10_000)
    return Measurement.get(console, console.options, renderable).maximum


def fitted_gate_table(trace: Trace, chars: str, layer: int, quantities: list[str], units: list[int] | None,
                      top_k: int, start: int, rows: int, width: int) -> tuple[Table, str]:
    """``gate_table`` made to fit ``width`` columns: fewer guesses first, then fewer quantities.

    Returns the table and a note saying what was left out ("" when nothing was)."""
    qs, k = list(quantities), top_k
    while True:
        table = gate_table(trace, chars, layer, qs, units, k, start, rows)
        if natural_width(table) <= width or (k == 1 and len(qs) == 1):
            break
        if k > 1:
            k -= 1
        else:
            qs.pop()
    left_out = []
    if k < top_k:
        left_out.append(f"{k} of {top_k} guesses")
    if len(qs) < len(quantities):
        left_out.append(f"quantities {', '.join(q for q in quantities if q not in qs)} hidden")
    note = f"narrow terminal: {'; '.join(left_out)} (--quantities, --units, --top-k or a wider window)" \
        if left_out else ""
    return table, note


def heatmap(trace: Trace, layer: int, q: str, unit: int, start: int, length: int, title: str = "") -> Group:
    """The text coloured by one unit's value at every character (line breaks kept, shown as ↵)."""
    v = trace.layers[layer][q][:, unit]
    stop = min(trace.T, start + length)
    body = Text()
    for t in range(start, stop):
        ch = trace.text[t]
        style = value_style(float(v[t]), q)
        if ch == "\n":
            body.append("↵", style=style)
            body.append("\n")
        else:
            body.append(ch if ch.isprintable() else shown(ch), style=style)
    legend = Text(f"{shown_text(title) if title else f'layer {layer} {q}[{unit}]'}   ", style="bold")
    legend.append_text(scale_legend(q))
    legend.append(f"  {start}–{stop - 1}/{trace.T}" if stop > start else "", style="dim")
    return Group(legend, body, Text(""))


def scale_legend(q: str) -> Text:
    lo, hi = (0.0, 1.0) if q in SIGMOID else (-1.0, 1.0)
    label = f"tanh({q})" if q == "c" else q
    legend = Text(f"{label}: {lo:g} ")
    for x in np.linspace(lo, hi, 9):
        legend.append("  ", style=value_style(float(math.atanh(x * 0.999)) if q == "c" else float(x), q))
    legend.append(f" {hi:g}")
    return legend


def bars(counts: np.ndarray) -> str:
    """A histogram as one row of block characters, scaled to its largest bin."""
    top = max(int(counts.max()), 1)
    return "".join(BARS[max(1, int(round(c / top * (len(BARS) - 1))))] if c else "·" for c in counts)


def saturation_table(sats: list[Saturation], keep: str | None, n_chars: int) -> Group:
    """Per layer and sigmoid gate: mean saturated fractions, histograms over units, integrators."""
    table = Table(title=f"gate saturation over {n_chars:,} characters", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for name, just in [("layer", "right"), ("gate", "left"), ("% < 0.1", "right"), ("% > 0.9", "right"),
                       ("hist < 0.1", "left"), ("hist > 0.9", "left"), ("mostly\n< 0.1", "right"),
                       ("mostly\n> 0.9", "right")]:
        table.add_column(name, justify=just, no_wrap=True)
    lines = []
    for s in sats:
        H = len(s.left)
        table.add_row(str(s.layer), s.gate, f"{100 * s.left.mean():.1f}", f"{100 * s.right.mean():.1f}",
                      bars(histogram(s.left)), bars(histogram(s.right)), f"{s.mostly_left}/{H}",
                      f"{s.mostly_right}/{H}")
        if s.gate == keep:
            lines.append(f"layer {s.layer}: {s.mostly_right} of {H} units are integrators ({keep} > 0.9 on more "
                         "than 90 % of the characters)")
    note = Text("\n".join(lines + [
        "%: of all unit-steps; hist: units by the % of characters on which they are saturated (0 % on the left, "
        "100 % on the right); mostly: on more than 90 % of the characters"]), style="dim")
    return Group(table, note)


def probe_table(result: ProbeResult, top: int) -> Group:
    lab = result.label
    measure = "AUC" if lab.binary else "correlation"
    table = Table(title=escape(shown_text(f"--probe {lab.name}: units tracking {lab.description}")),
                  title_justify="left",
                  header_style="bold")
    table.add_column("rank", justify="right")
    table.add_column("layer", justify="right")
    table.add_column("quantity")
    table.add_column("unit", justify="right")
    table.add_column(measure, justify="right")
    table.add_column("strength", justify="right")
    for n, u in enumerate(result.ranking[:top]):
        table.add_row(str(n + 1), str(u.layer), u.quantity, str(u.unit), f"{u.score:+.3f}" if not lab.binary
                      else f"{u.score:.3f}", f"{u.strength:.3f}")
    note = (f"strength: {'|AUC − 0.5| × 2' if lab.binary else '|r|'}; chance level (best strength with the label "
            f"shifted by half the text): {result.chance:.3f}")
    return Group(table, Text(note, style="dim"))


def params_table(rows: list[ParamRow], meta: dict, cfg) -> Group:
    """Model config and training state, then every tensor (and gate block) with its statistics."""
    train, corpus = meta.get("train", {}), meta.get("corpus", {})
    info = Table(show_header=False, box=None, title="checkpoint", title_justify="left", title_style="bold")
    info.add_column(style="dim")
    info.add_column()
    best = train.get("best_val_loss")
    best_s = f"{best:.4f} nats ({best / math.log(2):.3f} bits/char)" if isinstance(best, int | float) else "—"
    for k, v in [
        ("model", f"{cfg.cell}, {cfg.layers} layer(s) × {cfg.hidden} units, embed {cfg.embed}, "
                  f"dropout {cfg.dropout:g}, {cfg.dtype}"),
        ("vocabulary", f"{cfg.vocab_size} characters"),
        ("trained", f"step {train.get('step', '?')}, epoch {train.get('epoch', '?')}, best val loss {best_s}"),
        ("optimizer", f"{train.get('optimizer', '?')}, lr {train.get('lr', '?')} ({train.get('lr_schedule', '?')}), "
                      f"batch {train.get('effective_batch_size', '?')}×{train.get('effective_seq_len', '?')}"),
        ("corpus", f"{corpus.get('name', '?')}: {corpus.get('chars', 0):,} chars, sha256 "
                   f"{str(corpus.get('sha256', '?'))[:12]}…"),
        ("lstmgen", str(meta.get("lstmgen_version", "?"))),
    ]:
        info.add_row(k, str(v))
    table = Table(title="parameters", title_justify="left", header_style="bold")
    for name, just in [("tensor", "left"), ("shape", "left"), ("count", "right"), ("mean", "right"),
                       ("std", "right"), ("norm", "right")]:
        table.add_column(name, justify=just)
    total = 0
    for r in rows:
        style = "dim" if r.block else ""
        name = Text(f"  └ {r.name.rsplit(' ', 1)[1]}" if r.block else r.name)
        table.add_row(name, "×".join(map(str, r.shape)), f"{r.count:,}", f"{r.mean:+.4f}", f"{r.std:.4f}",
                      f"{r.norm:.3f}", style=style)
        if not r.block:
            total += r.count
    table.add_section()
    table.add_row("total", "", f"{total:,}", "", "", "", style="bold")
    return Group(info, Text(""), table)


def surprises(trace: Trace, chars: str, stack: str, n: int = 10) -> Group:
    """A bidirectional model's most surprising characters: surprising from both sides at once, they
    are very often typos (or the text's rarest spellings)."""
    bits = trace.surprisal_bits()
    order = np.argsort(-bits, kind="stable")[:n]
    table = Table(title=f"the {len(order)} most surprising characters, from both sides (often typos)",
                  title_justify="left", header_style="bold", box=None, pad_edge=False, padding=(0, 1))
    for col in ("t", "in context", "char", "likeliest there", "bits"):
        table.add_column(col, justify="right" if col in ("t", "bits") else "left", no_wrap=True)
    top_ids, top_p = trace.top_predictions(1)
    for t in order:
        t = int(t)
        left, right = trace.text[max(0, t - 12) : t], trace.text[t + 1 : t + 13]
        ctx = Text("".join(map(shown, left)), style="dim")
        ctx.append(shown(trace.text[t]), style="bold red")
        ctx.append("".join(map(shown, right)), style="dim")
        table.add_row(str(t), ctx, shown(trace.text[t]), f"{shown(chars[int(top_ids[t, 0])])} {top_p[t, 0]:.2f}",
                      f"{bits[t]:.1f}")
    note = Text(f"cloze model: guesses and bits are for each character itself, from both sides; tables show the "
                f"{'backward' if stack == 'bwd' else 'forward'} stack (--dir)", style="dim")
    return Group(table, note)
