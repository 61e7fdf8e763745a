"""lstmgen gradcheck: backpropagation through time against central differences, as a command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from lstmgen import checkpoint as ckpt_io
from lstmgen.cli.base import app, boundary, check_choice, err, out, safe
from lstmgen.config import CELL_TYPES, DIRECTIONS, ModelConfig
from lstmgen.errors import ConfigError
from lstmgen.gradcheck import EPS, FLOOR, TOLERANCE, check, problem
from lstmgen.model import CharLM

P_MODEL = "A random model (without CKPT)"


@app.command(epilog="Example: lstmgen gradcheck --cell gru --layers 2   |   lstmgen gradcheck runs/demo --json")
@boundary
def gradcheck(
    ckpt: Annotated[Path | None, typer.Argument(metavar="CKPT",
                                                help="Check this model (checkpoint or run directory) instead of "
                                                "a small random one.", show_default=False)] = None,
    cell: Annotated[str, typer.Option(metavar="NAME",
                                      help=f"{', '.join(CELL_TYPES)}.", rich_help_panel=P_MODEL)] = "lstm",
    layers: Annotated[int, typer.Option(metavar="N", min=1, max=8,
                                        help="Stacked layers.", rich_help_panel=P_MODEL)] = 2,
    direction: Annotated[str, typer.Option(metavar="NAME", help="fwd (left to right) or bi (bidirectional cloze).",
                                           rich_help_panel=P_MODEL)] = "fwd",
    hidden: Annotated[int, typer.Option(metavar="N", min=1, max=256,
                                        help="Hidden units.", rich_help_panel=P_MODEL)] = 5,
    embed: Annotated[int, typer.Option(metavar="N", min=1, max=256,
                                       help="Embedding size.", rich_help_panel=P_MODEL)] = 4,
    vocab: Annotated[int, typer.Option(metavar="N", min=2, max=1000,
                                       help="Vocabulary size.", rich_help_panel=P_MODEL)] = 7,
    batch: Annotated[int, typer.Option(metavar="N", min=1, max=64, help="Sequences B.")] = 2,
    seq_len: Annotated[int, typer.Option(metavar="N", min=1, max=256, help="Characters per sequence T.")] = 3,
    samples: Annotated[int | None, typer.Option(metavar="N", min=1, help="Check at most N random elements per tensor "
                                                "(default: all of a random model's; 40 of a checkpoint's).",
                                                show_default=False)] = None,
    seed: Annotated[int, typer.Option(metavar="N", min=0, help="Random seed (≥ 0; weights, characters, state).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout.")] = False,
):
    """Check backpropagation through time against central differences, tensor by tensor.

    Every parameter tensor and the initial state are checked in float64; exit 1 if any fails.

    The loss is the mean cross-entropy over B·T random characters plus a random linear function of
    the final state (so the gradient through the carried state is checked too). The default
    sizes are small and distinct (B, T, E, H, V = 2, 3, 4, 5, 7), so a transposed index shows.
    """
    check_choice("--cell", cell, CELL_TYPES)
    check_choice("--direction", direction, tuple(DIRECTIONS))
    rng = np.random.default_rng(seed)
    if ckpt is not None:
        ck = ckpt_io.load(ckpt)
        cfg = ModelConfig(**{**ck.config.to_dict(), "dtype": "float64", "dropout": 0.0})
        model = CharLM(cfg, params={k: v.astype(np.float64) for k, v in ck.params.items()})
        what = f"{safe(ckpt)}: {cfg.summary()}, vocab {cfg.vocab_size}"
        samples = samples or 40
    else:
        cfg = ModelConfig(vocab_size=vocab, cell=cell, layers=layers, hidden=hidden, embed=embed, dtype="float64",
                          direction=direction)
        model = CharLM(cfg, seed=seed)
        model.flat += rng.normal(0, 0.3, model.flat.shape)  # away from the structured initial values
        what = f"random {cfg.summary()}, embed {embed}, vocab {vocab}"
    if model.num_params > 2_000_000 and samples is None:
        raise ConfigError("the model is large: give --samples N to check N elements per tensor")
    x, y, state, w_final = problem(model, batch, seq_len, rng)
    results = check(model, x, y, state, w_final, samples=samples, rng=rng)
    ok = all(r.ok for r in results)
    if as_json:
        print(json.dumps({"ok": ok, "tensors": [r.to_json() for r in results]}))
    else:
        table = Table(title=f"gradient check, {what}, B {batch}, T {seq_len}, ε {EPS:g}, float64; elements "
                            f"checked: {'all' if samples is None else f'up to {samples} per tensor'}",
                      title_justify="left", caption=f"rel = |analytic − numeric| / max(|analytic|, |numeric|, "
                      f"{FLOOR:g}), the largest over the checked elements (at: its index); a tensor passes below "
                      f"{TOLERANCE:g}",
                      caption_justify="left")
        for col in ("tensor", "shape", "rel error", "at", "analytic", "numeric", ""):
            table.add_column(col, justify="left" if col in ("tensor", "") else "right", no_wrap=True)
        for r in results:
            table.add_row(r.name, "×".join(map(str, r.shape)), f"{r.max_rel_error:.1e}",
                          ",".join(map(str, r.worst)), f"{r.analytic:+.4g}", f"{r.numeric:+.4g}",
                          "[green]ok[/]" if r.ok else "[bold red]FAIL[/]")
        out.print(table)
    if not ok:
        bad = ", ".join(r.name for r in results if not r.ok)
        err.print(f"[bold red]gradient check failed:[/] {safe(bad)}")
        raise typer.Exit(1)
