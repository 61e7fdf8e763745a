"""lstmgen inspect: gate tables, heat maps, saturation, probes and exports of a model's trace."""


from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from lstmgen import explorer, probe, probes, view
from lstmgen.cli.base import (
    Threads,
    app,
    boundary,
    check_choice,
    err,
    given_text,
    load_model,
    out,
    safe,
    use_threads,
)
from lstmgen.errors import ConfigError, CorpusError, LstmgenError
from lstmgen.memory import PAGE_DISTANCE, influence
from lstmgen.terminal import shown

P_TEXT = "Text"
P_SHOW = "What to show"
P_OUT = "Files and machine output"


def _int_list(flag: str, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of unit numbers", param_hint=flag) from None
    if not values:
        raise typer.BadParameter("give at least one unit", param_hint=flag)
    return values


# the output files' options (long help texts: declared here, used by ``inspect``)
HtmlPage = Annotated[Path | None, typer.Option("--html", metavar="FILE", help="Also write an interactive explorer of "
                                               "the trace: one self-contained page (pick units, hover characters, "
                                               "select text to find the units that switch on there).",
                                               rich_help_panel=P_OUT)]
ExportFile = Annotated[Path | None, typer.Option("--export", metavar="FILE", help="Write every gate, state and "
                                                 "prediction to a .npz (the layout: docs/FORMAT.md in lstmgen's "
                                                 "source).", rich_help_panel=P_OUT)]
CsvFile = Annotated[Path | None, typer.Option("--csv", metavar="FILE", help="Write every value in long format: t, "
                                              "char, layer, unit, quantity, value.", rich_help_panel=P_OUT)]


@app.command(epilog="Example: lstmgen inspect runs/default --text 'She said \"yes\" (twice).' --top-units 3")
@boundary
def inspect(
    ckpt: Annotated[Path, typer.Argument(metavar="CKPT", help="Checkpoint file or run directory.")],
    text: Annotated[str | None, typer.Option(metavar="TEXT",
                                             help="The text to run the model over.", rich_help_panel=P_TEXT)] = None,
    file: Annotated[Path | None, typer.Option(metavar="FILE", help="Read the text from this UTF-8 file "
                                              "(@structured, @default: a bundled corpus).",
                                              rich_help_panel=P_TEXT)] = None,
    max_chars: Annotated[int, typer.Option(metavar="N", min=1, help="Use at most this many characters of --file.",
                                           rich_help_panel=P_TEXT)] = 20_000,
    warmup: Annotated[str, typer.Option(metavar="TEXT", help="Context run before the text (not shown), so the state is "
                                        "not the zero state.", rich_help_panel=P_TEXT)] = "",
    warmup_chars: Annotated[int, typer.Option(metavar="N", min=0, help="Use the first N characters of the text as "
                                              "warm-up context only.", rich_help_panel=P_TEXT)] = 0,
    stack: Annotated[str, typer.Option("--dir", metavar="NAME",
                                       help="A bidirectional model's stack to show: fwd (reads left to "
                                       "right) or bwd (right to left).", rich_help_panel=P_SHOW)] = "fwd",
    layer: Annotated[int | None, typer.Option(metavar="N",
                                              help="Layer of the table and heat maps, from 0. (default: last)",
                                              rich_help_panel=P_SHOW)] = None,
    units: Annotated[str | None, typer.Option(metavar="LIST",
                                              help="Show these units, e.g. 3,17,42.", rich_help_panel=P_SHOW)] = None,
    top_units: Annotated[int | None, typer.Option(metavar="N",
                                                  min=1, help="Show the K units ranked first by --rank-by.",
                                                  rich_help_panel=P_SHOW)] = None,
    rank_by: Annotated[str, typer.Option(metavar="NAME",
                                         help="variance, saturation or mean (|value|) of --quantity over the "
                                         "text.", rich_help_panel=P_SHOW)] = "variance",
    quantity: Annotated[str | None, typer.Option(metavar="NAME",
                                                 help="Quantity that ranks units and colours the heat map "
                                                 "(default: c for LSTMs, h otherwise).",
                                                 rich_help_panel=P_SHOW)] = None,
    quantities: Annotated[str | None, typer.Option(metavar="LIST",
                                                   help="Table columns, e.g. i,f,o (default: all of the "
                                                   "cell's).", rich_help_panel=P_SHOW)] = None,
    top_k: Annotated[int, typer.Option(metavar="N", min=1, help="Next-character guesses shown per row.",
                                       rich_help_panel=P_SHOW)] = 3,
    start: Annotated[int, typer.Option(metavar="N", min=0, help="First character shown in the table and heat maps.",
                                       rich_help_panel=P_SHOW)] = 0,
    rows: Annotated[int, typer.Option(metavar="N", min=0, help="Table rows (characters); 0 hides the table.",
                                      rich_help_panel=P_SHOW)] = 40,
    heat_chars: Annotated[int, typer.Option(metavar="N", min=0, help="Characters per heat map; 0 hides them.",
                                            rich_help_panel=P_SHOW)] = 800,
    probe_spec: Annotated[str | None, typer.Option("--probe", metavar="NAME",
                                                   help="Rank units by how well they track quotes, "
                                                   "brackets, line-position, indent or regex:PATTERN.",
                                                   rich_help_panel=P_SHOW)] = None,
    params: Annotated[bool, typer.Option("--params", metavar="",
                                         help="Add the parameter summary (every tensor and gate "
                                         "block) and the training state.", rich_help_panel=P_SHOW)] = False,
    html: HtmlPage = None,
    export: ExportFile = None,
    csv_path: CsvFile = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="",
                                          help="Print the view's data as one JSON object on stdout.",
                                          rich_help_panel=P_OUT)] = False,
    threads: Threads = None,
):
    """Show what the network does inside, character by character.

    Runs the model over a text from a zero state (after --warmup, if given) and shows, per
    character, the gates and states of one layer (i f g o c h for LSTMs, r z n h for GRU, h for
    RNN) with the model's next-character guesses; heat maps of single units over the text; how
    often every gate saturates; with --probe, the units that track a pattern. Without --export,
    --csv or --json the view goes to stdout.
    """
    use_threads(threads)
    model, vocab, ck = load_model(ckpt)
    cfg = model.cfg
    names = probe.quantities(cfg)
    layer, quantity, shown_q, chosen, top_k = _checked(model, layer, quantity, quantities, rank_by, units,
                                                       top_units, top_k, text, file, probe_spec, stack)
    text, warmup, source = _text_to_read(ck, model, vocab, text, file, max_chars, warmup, warmup_chars, start)

    from tqdm import tqdm

    with tqdm(total=len(text), unit="char", file=sys.stderr, disable=len(text) < 20_000 or None,
              desc="tracing", leave=False) as bar:
        trace = probe.trace_text(model, vocab, text, warmup=warmup, on_chunk=bar.update)
    _write_exports(trace, export, csv_path, names)
    if stack == "bwd":  # the tables, heat maps and rankings show the backward stack
        trace = dataclasses.replace(trace, layers=trace.reverse)
    chosen, heat_units, sats, found, param_rows = _analyses(trace, model, layer, quantity, rank_by, chosen,
                                                            top_units, probe_spec, params)
    if as_json:
        print(json.dumps(probe.inspect_json(trace, vocab, ck, layer, chosen, shown_q, quantity, rank_by, top_k, sats,
                                       found, param_rows, source), allow_nan=False))
    summary = shown(probe.summary(cfg, ck.meta, trace, source, warmup))
    if html is not None:
        _write_page(html, model, vocab, trace, warmup, summary, title=f"lstmgen inspect: {Path(str(ckpt)).name}")
    if export is not None or csv_path is not None or as_json:
        return
    _print_view(model, vocab, ck, trace, summary, stack, layer, chosen, heat_units, shown_q, quantity, top_k, start,
                rows, heat_chars, sats, found, param_rows)



def _analyses(trace, model, layer, quantity, rank_by, chosen, top_units, probe_spec, params):
    """What the view shows besides the trace: (the table's units, the heat maps' units, saturation, the
    probe's ranking, the parameter summary)."""
    if chosen is None and top_units is not None:
        order, _ = probe.rank_units(trace.layers[layer][quantity], rank_by, quantity)
        chosen = [int(j) for j in order[:top_units]]
    heat_units = chosen if chosen is not None else [
        int(probe.rank_units(trace.layers[layer][quantity], rank_by, quantity)[0][0])]
    found = probes.probe(trace, probe_spec) if probe_spec is not None else None
    param_rows = probe.param_summary(model.cfg, model.params) if params else None
    return chosen, heat_units, probe.saturation(trace), found, param_rows


def _write_exports(trace, export: Path | None, csv_path: Path | None, names) -> None:
    """--export and --csv: every value of both stacks (of a bidirectional model)."""
    if export is not None:
        probe.export_npz(export, trace)
        err.print(f"wrote {safe(export)}: {trace.T:,} characters × {len(trace.layers)} layer(s) × "
                  f"{', '.join(names)} and probs")
    if csv_path is not None:
        probe.export_csv(csv_path, trace)
        err.print(f"wrote {safe(csv_path)}: {trace.T * len(trace.layers) * len(names) * trace.H:,} rows")


def _write_page(html: Path, model, vocab, trace, warmup: str, summary: str, title: str) -> None:
    """--html: the explorer page, with the influence of each character on each guess (click a character)."""
    from tqdm import tqdm

    with tqdm(total=len(warmup) + trace.T, unit="guess", file=sys.stderr, disable=None, leave=False, delay=1.0,
              desc="influence of each character on each guess") as bar:
        infl = influence(model, vocab.encode(warmup + trace.text), PAGE_DISTANCE, warmup=len(warmup),
                         on_rows=bar.update)
    page = explorer.render(trace, vocab.chars, summary, title=title, influence=infl)
    try:
        html.write_text(page, encoding="utf-8")
    except OSError as e:
        raise LstmgenError(f"cannot write {html}: {e.strerror or e}") from e
    err.print(f"wrote {safe(html)} ({len(page.encode()) / 2**20:.1f} MB: {trace.T:,} characters × "
              f"{len(trace.layers)} layer(s) × {len(trace.layers[0])} quantities × {trace.H} units, 8 bits each); "
              "open it in a browser")


def _checked(model, layer, quantity, quantities, rank_by, units, top_units, top_k, text, file, probe_spec, stack):
    """The options checked against the model before any work: (layer, quantity, table columns, chosen
    units, guesses per row)."""
    cfg = model.cfg
    top_k = min(top_k, cfg.vocab_size)  # (no more guesses than characters)
    names = probe.quantities(cfg)
    layer = cfg.layers - 1 if layer is None else layer
    if not 0 <= layer < cfg.layers:
        raise typer.BadParameter(f"{layer} is not a layer of this {cfg.layers}-layer model (0 … {cfg.layers - 1})",
                                 param_hint="--layer")
    quantity = quantity or ("c" if "c" in names else "h")
    if quantity not in names:
        raise typer.BadParameter(f"{quantity!r} is not a quantity of {cfg.cell}: {', '.join(names)}",
                                 param_hint="--quantity")
    shown_q = names if quantities is None else [q for q in quantities.replace(" ", "").split(",") if q]
    bad = [q for q in shown_q if q not in names]
    if bad or not shown_q:
        raise typer.BadParameter(f"{quantities!r}: {cfg.cell} has {', '.join(names)}", param_hint="--quantities")
    if rank_by not in probe.RANK_BY:
        raise typer.BadParameter(f"{rank_by!r} is not one of {', '.join(probe.RANK_BY)}", param_hint="--rank-by")
    chosen = _int_list("--units", units)
    if chosen is not None and top_units is not None:
        raise ConfigError("--units and --top-units cannot be combined")
    if chosen is not None and any(not 0 <= j < cfg.hidden for j in chosen):
        raise typer.BadParameter(f"units are 0 … {cfg.hidden - 1} in this model", param_hint="--units")
    if probe_spec is not None:
        probes.parse_probe(probe_spec)  # the spec's syntax, before any work
    check_choice("--dir", stack, ("fwd", "bwd"))
    if stack == "bwd" and not model.network.both_sides:
        raise typer.BadParameter("a left-to-right model has no backward stack (train with --direction bi)",
                                 param_hint="--dir")

    return layer, quantity, shown_q, chosen, top_k


def _text_to_read(ck, model, vocab, text, file, max_chars, warmup, warmup_chars, start) -> tuple[str, str, str]:
    """The text to inspect, its warm-up and where it came from: --text, --file, else the corpus's
    held-out tail (or, without the corpus, a sample of the model)."""
    text, source = given_text(text, file, "inspect")
    if text is None:
        text, source = probe.default_text(ck.meta, model, vocab)
    elif file is not None:
        if len(text) > max_chars + warmup_chars:
            err.print(f"[yellow]warning:[/] using the first {max_chars + warmup_chars:,} of {len(text):,} "
                      "characters (--max-chars)")
            text = text[: max_chars + warmup_chars]
    if warmup_chars:
        warmup, text = warmup + text[:warmup_chars], text[warmup_chars:]
    if not text:
        raise CorpusError(f"the text to inspect is empty ({source})")
    if start >= len(text):
        raise typer.BadParameter(f"{start} is past the end of the text ({len(text):,} characters: --start 0 … "
                                 f"{len(text) - 1})", param_hint="--start")
    return text, warmup, source


def _print_view(model, vocab, ck, trace, summary, stack, layer, chosen, heat_units, shown_q, quantity, top_k, start,
                rows, heat_chars, sats, found, param_rows) -> None:
    """The terminal view on stdout: the summary, the gate table, heat maps, saturation and probe tables."""
    cfg = model.cfg
    product = out
    header = Text(summary, style="bold")
    product.print(header)
    product.print()
    if trace.both_sides:
        product.print(view.surprises(trace, vocab.chars, stack))
        product.print()
    if param_rows is not None:
        product.print(view.params_table(param_rows, ck.meta, cfg))
        product.print()
    if rows > 0 and start < trace.T:
        table, note = view.fitted_gate_table(trace, vocab.chars, layer, list(shown_q), chosen, top_k, start, rows,
                                             product.width)
        product.print(table)
        if note:
            product.print(Text(note, style="dim"))
        if model.network.inspect_note:
            product.print(Text(model.network.inspect_note, style="dim"))
        if start + rows < trace.T:
            product.print(Text(f"rows {start}–{min(trace.T, start + rows) - 1} of {trace.T}; --start and --rows "
                               "show others", style="dim"))
        product.print()
    if heat_chars > 0 and start < trace.T:
        for j in heat_units[:3]:
            product.print(view.heatmap(trace, layer, quantity, j, start, heat_chars))
    if sats:
        product.print(view.saturation_table(sats, probe.keep_gate(cfg), trace.T))
        product.print()
    if found is not None:
        product.print(view.probe_table(found, top=10))
        product.print()
        if heat_chars > 0:
            for u in found.ranking[:3]:
                product.print(view.heatmap(trace, u.layer, u.quantity, u.unit, start, heat_chars,
                                           title=f"layer {u.layer} {u.quantity}[{u.unit}] ({found.label.name} "
                                                 f"{u.score:+.3f})"))
