"""lstmgen sample and lstmgen eval: text out of a model, and the loss of a text under it."""


from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lstmgen.cli.base import (
    LN2,
    Threads,
    app,
    boundary,
    err,
    load_model,
    out,
    safe,
    use_threads,
)
from lstmgen.generate import sample_pieces
from lstmgen.scoring import score_text
from lstmgen.text import named_corpus, read_text


@app.command(epilog="Example: lstmgen sample runs/default --prime 'The ' --length 500 --temperature 0.8")
@boundary
def sample(
    ckpt: Annotated[Path, typer.Argument(metavar="CKPT", help="Checkpoint file or run directory.")],
    length: Annotated[int, typer.Option(metavar="N",
                                        min=0, help="Characters to generate (not counting the prime).")] = 500,
    temperature: Annotated[float, typer.Option(metavar="X", min=0.0, help="Softmax temperature; 0 is greedy.")] = 1.0,
    top_k: Annotated[int | None, typer.Option(metavar="N",
                                              min=1, help="Sample only among the K likeliest characters.")] = None,
    top_p: Annotated[float | None, typer.Option(metavar="X",
                                                min=0.0, max=1.0, help="Nucleus sampling: the smallest set "
                                                "of characters with this much probability.")] = None,
    prime: Annotated[str, typer.Option(metavar="TEXT", help="Text to start from; printed first.")] = "",
    seed: Annotated[int | None, typer.Option(metavar="N",
                                             min=0, help="Random seed (≥ 0): same seed, same output.")] = None,
    num_samples: Annotated[int, typer.Option(metavar="N",
                                             min=1, help="How many samples, generated together in batches of up to 256 "
                                             "(each with its own random stream and --stop); the first streams "
                                             "as it is generated, the others follow, each after an empty "
                                             "line.")] = 1,
    stop: Annotated[str | None, typer.Option(metavar="TEXT",
                                             help="End a sample right after this string is generated.")] = None,
    threads: Threads = None,
):
    """Generate text from a trained model; it streams to stdout.

    Prints the prime text, then LENGTH generated characters. Several samples are separated by
    an empty line. The same checkpoint, options and --seed give byte-identical output.
    """
    use_threads(threads)
    model, vocab, _ = load_model(ckpt)
    pieces = sample_pieces(model, vocab, length, num_samples=num_samples, prime=prime, temperature=temperature,
                           top_k=top_k, top_p=top_p, seed=seed, stop=stop)
    tty = sys.stdout.isatty()
    w = sys.stdout
    for n, (i, piece) in enumerate(pieces):
        w.write(piece if i == 0 else "\n\n" + piece)  # each further sample after an empty line
        if tty or n % 64 == 63:
            w.flush()
    w.flush()
    if tty:
        w.write("\n")
        w.flush()


@app.command(name="eval", epilog="Example: lstmgen eval runs/default corpora/default.txt --json")
@boundary
def eval_cmd(
    ckpt: Annotated[Path, typer.Argument(metavar="CKPT", help="Checkpoint file or run directory.")],
    file: Annotated[Path, typer.Argument(metavar="FILE", help="UTF-8 text to score (@default, @structured: a "
                                         "bundled corpus).")],
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object on stdout.")] = False,
    threads: Threads = None,
):
    """Loss, bits per character and perplexity of a text under a model.

    The whole file is read as one sequence from a zero state, without dropout; the loss is the
    mean of −ln p(x_t | x_0 … x_{t−1}) over t = 1 … N−1, in nats. For a bidirectional (cloze)
    model, the mean of −ln p(x_t | x_<t, x_>t) over t = 0 … N−1: each stack reads the file in one
    pass (not comparable with a left-to-right model's figure).
    """
    use_threads(threads)
    model, vocab, ck = load_model(ckpt)
    file = named_corpus(file)
    text = read_text(file, "eval")
    result = score_text(model, vocab, text, f"eval file {file}")
    loss = result["loss"]
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{safe(file.name)} under {safe(ckpt)}", show_header=False)
    table.add_row("characters", f"{len(text):,}")
    table.add_row("loss (nats/char)", f"{loss:.4f}")
    table.add_row("bits per character", f"{loss / LN2:.4f}")
    table.add_row("perplexity", f"{math.exp(loss):.3f}")
    cfg = ck.config
    table.add_row("model", f"{cfg.summary()}, vocab {cfg.vocab_size}, "
                           f"step {ck.meta.get('train', {}).get('step', '?')}")
    out.print(table)
    if model.network.both_sides:
        err.print("note: a bidirectional model predicts each character from both sides (cloze); its bits/char "
                  "are not comparable with a left-to-right model's")


