"""lstmgen sample and lstmgen eval: text out of a model, and the loss of a text under it."""


from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
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
from lstmgen.errors import ConfigError, CorpusError
from lstmgen.generate import check_options, generate, sample_batches
from lstmgen.text import named_corpus, read_text
from lstmgen.train import evaluate_ids


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
    check_options(temperature, top_k, top_p)
    if top_p == 0:
        raise ConfigError("--top-p must be greater than 0")
    model, vocab, _ = load_model(ckpt)
    if model.cfg.direction == "bi":
        raise ConfigError(f"{ckpt} is a bidirectional (cloze) model: it predicts a character from both sides and "
                          "cannot generate left to right; fill in masked text with: lstmgen fill CKPT 'th_ c_t'")
    vocab.encode(prime, "prime text")  # unknown characters: an error naming them, before any output
    tty = sys.stdout.isatty()
    w = sys.stdout
    w.write(prime)
    if num_samples == 1:
        for i, ch in enumerate(generate(model, vocab, length, prime=prime, temperature=temperature, top_k=top_k,
                                        top_p=top_p, rng=np.random.default_rng(seed), stop=stop)):
            w.write(ch)
            if tty or i % 64 == 63:
                w.flush()
    else:  # batches of rows; the first sample streams, the others of a batch follow when it is done
        for rows, steps in sample_batches(model, vocab, length, num_samples, prime=prime, temperature=temperature,
                                          top_k=top_k, top_p=top_p, seed=seed, stop=stop):
            streams = rows.start == 0
            rest = [[] for _ in range(len(rows) - streams)]
            for i, chars in enumerate(steps):
                if streams and chars[0] is not None:
                    w.write(chars[0])
                    if tty or i % 64 == 63:
                        w.flush()
                for buf, ch in zip(rest, chars[streams:]):
                    if ch is not None:
                        buf.append(ch)
            for buf in rest:
                w.write("\n\n" + prime + "".join(buf))
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
    ids = vocab.encode(text, f"eval file {file}")
    if len(ids) < 2:
        raise CorpusError(f"eval file {file} needs at least 2 characters, it has {len(ids)}")
    loss = evaluate_ids(model, ids, streams=1, chunk=1024)
    result = {"loss": loss, "bpc": loss / LN2, "perplexity": math.exp(loss), "chars": len(text),
              "direction": ck.meta["model"].get("direction", "fwd")}
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{safe(file.name)} under {safe(ckpt)}", show_header=False)
    table.add_row("characters", f"{len(text):,}")
    table.add_row("loss (nats/char)", f"{loss:.4f}")
    table.add_row("bits per character", f"{loss / LN2:.4f}")
    table.add_row("perplexity", f"{math.exp(loss):.3f}")
    cfg = ck.config
    table.add_row("model", f"{cfg.cell} {cfg.layers}×{cfg.hidden}, vocab {cfg.vocab_size}, "
                           f"step {ck.meta.get('train', {}).get('step', '?')}")
    out.print(table)
    if cfg.direction == "bi":
        err.print("note: a bidirectional model predicts each character from both sides (cloze); its bits/char "
                  "are not comparable with a left-to-right model's")


