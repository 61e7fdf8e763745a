"""The command line: train, sample, eval. The one place that prints, exits, and handles signals."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import signal
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lstmgen import __version__
from lstmgen import checkpoint as ckpt_io
from lstmgen.errors import ConfigError, CorpusError, LstmgenError
from lstmgen.generate import check_options, generate
from lstmgen.model import CELL_TYPES, CharLM
from lstmgen.optim import OPTIMIZERS, SCHEDULES
from lstmgen.text import DEFAULT_CORPUS, Vocab, read_text
from lstmgen.train import (
    TrainOptions,
    default_run_dir,
    evaluate_ids,
    new_trainer,
    resume_trainer,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    help="Character-level recurrent language models (LSTM, GRU, RNN, peephole, CIFG) in NumPy.",
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)
LN2 = math.log(2)


def boundary(fn):
    """Turn lstmgen's errors (and Ctrl-C outside training) into one red line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LstmgenError as e:
            if os.environ.get("LSTMGEN_DEBUG") == "1":
                raise
            err.print(f"[bold red]error:[/] {escape(str(e))}")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `lstmgen sample ... | head`: the reader left; not an error
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            except OSError:
                pass
            raise typer.Exit(0) from None

    return wrapper


def _version(value: bool):
    if value:
        print(f"lstmgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
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
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 10m or 1h")
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    total = h * 3600 + mnt * 60 + s
    if total <= 0:
        raise typer.BadParameter(f"{text!r} must be longer than zero")
    return total


P_MODEL = "Model (fixed for the life of a run)"
P_OPT = "Optimisation"
P_DATA = "Data"
P_RUN = "Stopping and reporting"


@app.command(epilog="Example: lstmgen train corpora/default.txt --max-time 5m --out runs/demo")
@boundary
def train(
    corpus: Annotated[Path | None, typer.Argument(help="UTF-8 text file (default: the bundled corpus).",
                                                  show_default=False)] = None,
    cell: Annotated[str | None, typer.Option(help=f"Recurrent cell: {', '.join(CELL_TYPES)}. (default lstm)",
                                             rich_help_panel=P_MODEL)] = None,
    layers: Annotated[int | None, typer.Option(min=1, help="Stacked layers. (default 2)",
                                               rich_help_panel=P_MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(min=1, help="Hidden units per layer. (default 256)",
                                               rich_help_panel=P_MODEL)] = None,
    embed: Annotated[int | None, typer.Option(min=1, help="Embedding size. (default 64)",
                                              rich_help_panel=P_MODEL)] = None,
    dropout: Annotated[float | None, typer.Option(min=0.0, max=0.999999, help="Dropout between layers and before "
                                                  "the output layer. (default 0.1)",
                                                  rich_help_panel=P_MODEL)] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 or float64. (default float32)",
                                              rich_help_panel=P_MODEL)] = None,
    seq_len: Annotated[int | None, typer.Option(min=1, help="Truncated BPTT length T. (default 100)",
                                                rich_help_panel=P_DATA)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Parallel streams B (state carried across "
                                                   "batches). (default 32)", rich_help_panel=P_DATA)] = None,
    val_frac: Annotated[float | None, typer.Option(min=0.0, max=0.999999, help="Held-out tail of the corpus. "
                                                   "(default 0.05)", rich_help_panel=P_DATA)] = None,
    optimizer: Annotated[str | None, typer.Option(help=f"{', '.join(OPTIMIZERS)}. (default adam)",
                                                  rich_help_panel=P_OPT)] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Learning rate. (default 0.002)",
                                             rich_help_panel=P_OPT)] = None,
    lr_schedule: Annotated[str | None, typer.Option(help=f"{', '.join(SCHEDULES)} (cosine: linear warm-up, "
                                                    "decay to 10 %). (default cosine)",
                                                    rich_help_panel=P_OPT)] = None,
    warmup: Annotated[int | None, typer.Option(min=0, help="Warm-up steps. (default 50)",
                                               rich_help_panel=P_OPT)] = None,
    weight_decay: Annotated[float | None, typer.Option(min=0.0, help="Weight decay on weight matrices "
                                                       "(decoupled for adamw). (default 0)",
                                                       rich_help_panel=P_OPT)] = None,
    grad_clip: Annotated[float | None, typer.Option(min=0.0, help="Clip by global norm; 0 = off. (default 5)",
                                                    rich_help_panel=P_OPT)] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed. (default 1337)", rich_help_panel=P_OPT)] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop at this step (counts the whole run).",
                                                  rich_help_panel=P_RUN)] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Stop after this many epochs (whole run). "
                                               "(default 20)", rich_help_panel=P_RUN)] = None,
    max_time: Annotated[str | None, typer.Option(help="Time budget of this invocation: 90s, 10m, 1h.",
                                                 rich_help_panel=P_RUN)] = None,
    eval_every: Annotated[int | None, typer.Option(min=1, help="Validate and save every N steps. "
                                                   "(default 200)", rich_help_panel=P_RUN)] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Stop after N evaluations without improvement.",
                                                 rich_help_panel=P_RUN)] = None,
    sample_every: Annotated[int | None, typer.Option(min=1, help="Print a short sample to stderr every N steps.",
                                                     rich_help_panel=P_RUN)] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory (default: runs/<corpus name>, "
                                                 "never another run's).", rich_help_panel=P_RUN)] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory exactly.",
                                                rich_help_panel=P_RUN)] = None,
    init_from: Annotated[Path | None, typer.Option(help="Start from this checkpoint's weights (fine-tuning).",
                                                   rich_help_panel=P_RUN)] = None,
):
    """Train a character-level model on a text file."""
    given = {
        "cell": cell, "layers": layers, "hidden": hidden, "embed": embed, "dropout": dropout, "dtype": dtype,
        "seq_len": seq_len, "batch_size": batch_size, "val_frac": val_frac, "optimizer": optimizer, "lr": lr,
        "lr_schedule": lr_schedule, "warmup": warmup, "weight_decay": weight_decay, "grad_clip": grad_clip,
        "seed": seed, "max_steps": max_steps, "epochs": epochs, "max_time": parse_duration(max_time),
        "eval_every": eval_every, "patience": patience, "sample_every": sample_every,
    }
    _check_choice("--cell", cell, CELL_TYPES)
    _check_choice("--optimizer", optimizer, OPTIMIZERS)
    _check_choice("--lr-schedule", lr_schedule, SCHEDULES)
    _check_choice("--dtype", dtype, ("float32", "float64"))
    if resume is not None:
        if init_from is not None:
            raise ConfigError("--resume and --init-from cannot be combined")
        trainer = resume_trainer(resume, corpus, given)
    else:
        if corpus is None:
            corpus = DEFAULT_CORPUS
            if not corpus.exists():
                raise CorpusError(f"the bundled corpus is not at {corpus}; pass a text file")
        opts = TrainOptions(**{k: v for k, v in given.items() if v is not None})
        if max_steps is not None and epochs is None:
            opts.epochs = None  # an explicit step budget replaces the default epoch budget
        trainer = new_trainer(corpus, out_dir or default_run_dir(corpus), opts, init_from)
    _run_training(trainer, resumed=resume is not None)


def _check_choice(flag: str, value: str | None, choices) -> None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=flag)


def _run_training(trainer, resumed: bool) -> None:
    from tqdm import tqdm

    for w in trainer.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    cfg, o = trainer.model.cfg, trainer.opts
    err.print(
        f"{'resuming' if resumed else 'training'} on {escape(trainer.corpus_path.name)}: "
        f"{trainer.n_chars:,} chars, vocab {len(trainer.vocab)} | {cfg.cell} {cfg.layers}×{cfg.hidden}, "
        f"embed {cfg.embed}, dropout {cfg.dropout:g}, {trainer.model.num_params:,} params, {cfg.dtype} | "
        f"batch {trainer.B}×{trainer.T}, {o.optimizer} lr {o.lr:g} ({o.lr_schedule}) | "
        f"run dir {escape(str(trainer.run_dir))}"
    )
    total = trainer.total_steps
    bar = tqdm(total=total, initial=trainer.step, unit="step", file=sys.stderr, dynamic_ncols=True,
               disable=None, smoothing=0.05)
    sample_rng = np.random.default_rng(o.seed)

    def on_progress(p):
        bar.n = p.step
        val = f"{p.val_loss:.3f}" if p.val_loss is not None else "-"
        bpc = f"{p.val_loss / LN2:.3f}" if p.val_loss is not None else "-"
        bar.set_postfix_str(f"ep {p.epoch} loss {p.train_loss:.3f} val {val} bpc {bpc} "
                            f"{p.chars_per_sec / 1000:.1f}k char/s", refresh=False)
        bar.update(0)
        if p.event == "eval" and bar.disable:
            print(f"step {p.step} epoch {p.epoch}: train {p.train_loss:.4f} val {val} bpc {bpc} "
                  f"lr {p.lr:.2e} {p.chars_per_sec:,.0f} char/s", file=sys.stderr, flush=True)
        if p.event == "sample":
            text = "".join(generate(trainer.model, trainer.vocab, 200, temperature=0.8, rng=sample_rng))
            tqdm.write(f"--- sample at step {p.step} ---\n{text}\n---", file=sys.stderr)

    def on_signal(signum, frame):
        trainer.stop_request = "SIGINT" if signum == signal.SIGINT else "SIGTERM"

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = trainer.run(on_progress)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        bar.close()
    where = escape(str(summary.run_dir))
    if summary.stop_reason in ("SIGINT", "SIGTERM"):
        err.print(f"[yellow]interrupted ({summary.stop_reason}) at step {summary.step}:[/] saved "
                  f"{where}/latest.npz; continue with: lstmgen train --resume {where}")
        raise typer.Exit(130 if summary.stop_reason == "SIGINT" else 143)
    best = summary.best_val_loss
    best_s = f"best val loss {best:.4f} ({best / LN2:.3f} bits/char)" if best is not None else "no validation"
    err.print(f"[green]done[/] ({summary.stop_reason}) after {summary.step} steps, {summary.epoch} epochs: "
              f"{best_s}; saved {where}/best.npz and latest.npz")


def _load_model(path: Path) -> tuple[CharLM, Vocab, ckpt_io.Checkpoint]:
    ck = ckpt_io.load(path)
    return CharLM(ck.config, params=ck.params), Vocab(ck.meta["vocab"]), ck


@app.command(epilog="Example: lstmgen sample runs/default --prime 'The ' --length 500 --temperature 0.8")
@boundary
def sample(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")],
    length: Annotated[int, typer.Option(min=0, help="Characters to generate (not counting the prime).")] = 500,
    temperature: Annotated[float, typer.Option(min=0.0, help="Softmax temperature; 0 is greedy.")] = 1.0,
    top_k: Annotated[int | None, typer.Option(min=1, help="Sample only among the K likeliest characters.")] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Nucleus sampling: the smallest set "
                                                "of characters with this much probability.")] = None,
    prime: Annotated[str, typer.Option(help="Text to start from; printed first.")] = "",
    seed: Annotated[int | None, typer.Option(help="Random seed: same seed, same output.")] = None,
    num_samples: Annotated[int, typer.Option(min=1, help="How many samples; they are separated by an "
                                             "empty line.")] = 1,
    stop: Annotated[str | None, typer.Option(help="End a sample right after this string is generated.")] = None,
):
    """Generate text from a trained model; it streams to stdout.

    Prints the prime text, then LENGTH generated characters. Several samples are separated by
    an empty line. The same checkpoint, options and --seed give byte-identical output.
    """
    check_options(temperature, top_k, top_p)
    if top_p == 0:
        raise ConfigError("--top-p must be greater than 0")
    model, vocab, _ = _load_model(ckpt)
    vocab.encode(prime, "prime text")  # unknown characters: an error naming them, before any output
    rng = np.random.default_rng(seed)
    tty = sys.stdout.isatty()
    w = sys.stdout
    for n in range(num_samples):
        if n > 0:
            w.write("\n\n")
        w.write(prime)
        for i, ch in enumerate(generate(model, vocab, length, prime=prime, temperature=temperature,
                                        top_k=top_k, top_p=top_p, rng=rng, stop=stop)):
            w.write(ch)
            if tty or i % 64 == 63:
                w.flush()
        w.flush()
    if tty:
        w.write("\n")
        w.flush()


@app.command(name="eval", epilog="Example: lstmgen eval runs/default corpora/default.txt --json")
@boundary
def eval_cmd(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")],
    file: Annotated[Path, typer.Argument(help="UTF-8 text to score.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
):
    """Loss, bits per character and perplexity of a text under a model.

    The whole file is read as one sequence from a zero state, without dropout; the loss is the
    mean of −ln p(x_t | x_0 … x_{t−1}) over t = 1 … N−1, in nats.
    """
    model, vocab, ck = _load_model(ckpt)
    text = read_text(file, "eval")
    ids = vocab.encode(text, f"eval file {file}")
    if len(ids) < 2:
        raise CorpusError(f"eval file {file} needs at least 2 characters, it has {len(ids)}")
    loss = evaluate_ids(model, ids, streams=1, chunk=1024)
    result = {"loss": loss, "bpc": loss / LN2, "perplexity": math.exp(loss), "chars": len(text)}
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{escape(file.name)} under {escape(str(ckpt))}", show_header=False)
    table.add_row("characters", f"{len(text):,}")
    table.add_row("loss (nats/char)", f"{loss:.4f}")
    table.add_row("bits per character", f"{loss / LN2:.4f}")
    table.add_row("perplexity", f"{math.exp(loss):.3f}")
    cfg = ck.config
    table.add_row("model", f"{cfg.cell} {cfg.layers}×{cfg.hidden}, vocab {cfg.vocab_size}, "
                           f"step {ck.meta.get('train', {}).get('step', '?')}")
    out.print(table)


def main() -> None:
    app()
