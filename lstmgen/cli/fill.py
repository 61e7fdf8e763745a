"""lstmgen fill: masked characters filled in by a model, from both sides when it is bidirectional."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lstmgen.cli.base import app, boundary, err, load_model
from lstmgen.filling import fill_text


@app.command(epilog="Example: lstmgen fill runs/cloze 'The c_t sat on the m_t.' --json")
@boundary
def fill(
    ckpt: Annotated[Path, typer.Argument(metavar="CKPT", help="Checkpoint file or run directory.")],
    text: Annotated[str, typer.Argument(metavar="TEXT",
                                        help="The text, with the characters to fill written as the mask.")],
    mask: Annotated[str, typer.Option(metavar="CHAR", help="The mask character.")] = "_",
    temperature: Annotated[float, typer.Option(metavar="X",
                                               min=0.0, help="0: the likeliest character; else sample.")] = 0.0,
    top_k: Annotated[int | None, typer.Option(metavar="N",
                                              min=1, help="Sample only among the K likeliest characters.")] = None,
    seed: Annotated[int | None, typer.Option(metavar="N",
                                             min=0, help="Random seed (≥ 0): same seed, same output.")] = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print the text and every filled position's five "
                                          "likeliest characters as JSON.")] = False,
):
    """Fill in the masked characters of a text; prints the filled text and nothing else.

    A bidirectional model (trained with --direction bi) fills each mask from both sides: the most
    certain position first, then again with it fixed, until none is left. While a mask is not yet
    filled, both stacks read there the character the model currently finds likeliest (at first:
    its guess from the rest of the text with the masks read as spaces). A left-to-right model fills
    from the left only, in reading order.
    """
    if len(mask) != 1:
        raise typer.BadParameter(f"{mask!r} must be one character", param_hint="--mask")
    model, vocab, _ = load_model(ckpt)
    done = fill_text(model, vocab, text, mask, temperature=temperature, top_k=top_k, seed=seed)
    if done.from_left_only:
        err.print("note: a left-to-right model: each mask is filled from the text on its left only")
    print(json.dumps(done.to_json(vocab)) if as_json else done.text)
