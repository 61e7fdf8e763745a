"""lstmgen fill: masked characters filled in by a model, from both sides when it is bidirectional."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lstmgen import cloze
from lstmgen.cli.base import app, boundary, err, load_model
from lstmgen.errors import VocabError
from lstmgen.generate import Sampler
from lstmgen.text import visible


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
    known = set(vocab.chars)
    unknown = sorted({c for c in text if c != mask and c not in known})
    if unknown:
        raise VocabError(f"the text has characters the model does not know: {', '.join(map(visible, unknown))}")
    masked = np.array([c == mask for c in text], dtype=bool)
    placeholder = vocab.index.get(" ", 0)  # what an unfilled mask reads as, before the first guess
    ids = np.array([placeholder if m else vocab.index[c] for c, m in zip(text, masked)], dtype=np.int64)
    sampler = Sampler(np.random.default_rng(seed), len(vocab), temperature, top_k)

    def choose(p: np.ndarray) -> int:
        return int(np.argmax(p)) if temperature == 0 else sampler(np.log(np.maximum(p, 1e-300)))

    if model.cfg.direction == "bi":
        filled, done = cloze.fill(model, ids, masked, choose)
    else:
        err.print("note: a left-to-right model: each mask is filled from the text on its left only")
        filled, done = _fill_left_to_right(model, ids, masked, choose, start=vocab.index.get("\n", 0))
    result = vocab.decode(filled)
    if as_json:
        order = sorted(done, key=lambda d: d[0])
        print(json.dumps({"text": result, "filled": [
            {"index": int(t), "char": vocab.chars[c],
             "top": [[vocab.chars[i], round(float(p[i]), 6)] for i in np.argsort(-p, kind="stable")[:5]]}
            for t, c, p in order]}))
    else:
        print(result)


def _fill_left_to_right(model, ids: np.ndarray, masked: np.ndarray, choose, start: int):
    """A forward model: read left to right, choosing each masked character from the text before it
    (a mask at the very start: the model's guess after ``start``, a newline, as ``sample`` begins)."""
    ids = ids.copy()
    done = []
    stepper = model.stepper(1)
    logits = None
    for t in range(len(ids)):
        if masked[t]:
            if logits is None:  # nothing on the left: the model's guess after a newline
                logits = stepper.step(start).copy()
                stepper.reset()
            z = logits[0].astype(np.float64)
            p = np.exp(z - z.max())
            p /= p.sum()
            ids[t] = choose(p)
            done.append((t, int(ids[t]), p))
        logits = stepper.step(int(ids[t])).copy()
    return ids, done
