"""The command line: train, sample, eval, inspect. The one place that prints, exits, and handles signals."""

from __future__ import annotations

import functools
import io
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
from rich.text import Text
from typer.core import TyperGroup

from lstmgen import __version__, probe, view
from lstmgen import checkpoint as ckpt_io
from lstmgen.corpus import DEFAULT_GLOB
from lstmgen.errors import ConfigError, CorpusError, LstmgenError
from lstmgen.generate import check_options, generate, generate_many
from lstmgen.model import CELL_TYPES, CharLM
from lstmgen.optim import OPTIMIZERS, SCHEDULES
from lstmgen.parallel import WorkerLost, mpi_world
from lstmgen.rundir import default_run_dir
from lstmgen.text import DEFAULT_CORPUS, Vocab, read_text
from lstmgen.threads import get_threads, set_threads
from lstmgen.train import TrainOptions, evaluate_ids, join_world, new_trainer, resume_trainer, start_workers


class _OneLineErrors(TyperGroup):
    """Usage errors (bad option values, missing arguments) as one line on stderr, exit 2."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as e:  # Click's exceptions (vendored by newer Typer): duck-typed
            if type(e).__name__ == "Abort":
                err.print("[bold red]interrupted[/]")
                sys.exit(130)
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            ctx, msg = getattr(e, "ctx", None), e.format_message()
            if msg:  # (no arguments at all: the help was shown, nothing to add)
                value = _given_value(getattr(e, "param", None), kwargs.get("args", args[0] if args else None))
                if value is not None:
                    msg = msg.replace(":", f" (got {value!r}):", 1)
                where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
                err.print(f"[bold red]error:[/] {escape(msg)}{escape(where)}")
            sys.exit(e.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


def _given_value(param, argv) -> str | None:
    """What the user typed for an option that failed validation (to name it in the error)."""
    opts = getattr(param, "opts", None)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not opts:
        return None
    for n, tok in enumerate(argv):
        for o in opts:
            if tok == o and n + 1 < len(argv):
                return argv[n + 1]
            if tok.startswith(o + "="):
                return tok[len(o) + 1 :]
    return None


app = typer.Typer(
    cls=_OneLineErrors,
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
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite results are checked
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
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 10m or 1h", param_hint="--max-time")
    h, mnt, s = (float(g) if g else 0.0 for g in m.groups())
    total = h * 3600 + mnt * 60 + s
    if total <= 0:
        raise typer.BadParameter(f"{text!r} must be longer than zero", param_hint="--max-time")
    return total


P_MODEL = "Model (fixed for the life of a run)"
P_OPT = "Optimisation"
P_DATA = "Data"
P_RUN = "Stopping and reporting"

Threads = Annotated[int | None, typer.Option(min=1, help="BLAS threads (default: OPENBLAS_NUM_THREADS / "
                                             "OMP_NUM_THREADS, else all cores).", show_default=False)]


def _use_threads(n: int | None) -> None:
    if n is not None and not set_threads(n):
        err.print("[yellow]warning:[/] could not set the BLAS thread count here; set OPENBLAS_NUM_THREADS "
                  "(or OMP_NUM_THREADS) before starting lstmgen")


D = TrainOptions()  # the defaults, as the help shows them


@app.command(epilog="Example: lstmgen train corpora/default.txt --max-time 5m --out runs/demo")
@boundary
def train(
    corpus: Annotated[list[Path] | None, typer.Argument(
        help="UTF-8 text files and/or directories, read in order as one text (default: the bundled corpus).",
        show_default=False)] = None,
    glob: Annotated[str | None, typer.Option(help="Which files of a CORPUS directory to read (recursively, sorted, "
                                             "hidden ones skipped). (default *.txt)", rich_help_panel=P_DATA)] = None,
    cell: Annotated[str | None, typer.Option(help=f"Recurrent cell: {', '.join(CELL_TYPES)}. (default {D.cell})",
                                             rich_help_panel=P_MODEL)] = None,
    layers: Annotated[int | None, typer.Option(min=1, help=f"Stacked layers. (default {D.layers})",
                                               rich_help_panel=P_MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(min=1, help=f"Hidden units per layer. (default {D.hidden})",
                                               rich_help_panel=P_MODEL)] = None,
    embed: Annotated[int | None, typer.Option(min=1, help=f"Embedding size. (default {D.embed})",
                                              rich_help_panel=P_MODEL)] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout between layers and before "
                                                  f"the output layer. (default {D.dropout:g})",
                                                  rich_help_panel=P_MODEL)] = None,
    dtype: Annotated[str | None, typer.Option(help=f"float32 or float64. (default {D.dtype})",
                                              rich_help_panel=P_MODEL)] = None,
    seq_len: Annotated[int | None, typer.Option(min=1, help=f"Truncated BPTT length T. (default {D.seq_len})",
                                                rich_help_panel=P_DATA)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Parallel streams B (state carried across "
                                                   f"batches). (default {D.batch_size})",
                                                   rich_help_panel=P_DATA)] = None,
    val_frac: Annotated[float | None, typer.Option(help="Held-out tail of the corpus. "
                                                   f"(default {D.val_frac:g})", rich_help_panel=P_DATA)] = None,
    optimizer: Annotated[str | None, typer.Option(help=f"{', '.join(OPTIMIZERS)}. (default {D.optimizer})",
                                                  rich_help_panel=P_OPT)] = None,
    lr: Annotated[float | None, typer.Option(help=f"Learning rate, > 0. (default {D.lr:g})",
                                             rich_help_panel=P_OPT)] = None,
    lr_schedule: Annotated[str | None, typer.Option(help=f"{', '.join(SCHEDULES)} (cosine: linear warm-up, "
                                                    f"decay to 10 %). (default {D.lr_schedule})",
                                                    rich_help_panel=P_OPT)] = None,
    warmup: Annotated[int | None, typer.Option(min=0, help=f"Warm-up steps. (default {D.warmup})",
                                               rich_help_panel=P_OPT)] = None,
    weight_decay: Annotated[float | None, typer.Option(min=0.0, help="Weight decay on weight matrices "
                                                       f"(decoupled for adamw). (default {D.weight_decay:g})",
                                                       rich_help_panel=P_OPT)] = None,
    grad_clip: Annotated[float | None, typer.Option(min=0.0, help="Clip by global norm; 0 = off. "
                                                    f"(default {D.grad_clip:g})",
                                                    rich_help_panel=P_OPT)] = None,
    seed: Annotated[int | None, typer.Option(help=f"Random seed. (default {D.seed})", rich_help_panel=P_OPT)] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop at this step (counts the whole run).",
                                                  rich_help_panel=P_RUN)] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Stop after this many epochs (whole run). "
                                               f"(default {D.epochs})", rich_help_panel=P_RUN)] = None,
    max_time: Annotated[str | None, typer.Option(help="Time budget of this invocation: 90s, 10m, 1h.",
                                                 rich_help_panel=P_RUN)] = None,
    eval_every: Annotated[int | None, typer.Option(min=1, help="Validate and save every N steps. "
                                                   f"(default {D.eval_every})", rich_help_panel=P_RUN)] = None,
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
    workers: Annotated[int | None, typer.Option(min=1, help="Data-parallel worker processes, each on its rows of "
                                                "every batch (default: one per core, at least 4 rows each; "
                                                "a resumed run: its own count). Under mpiexec the MPI ranks "
                                                "are the workers.", show_default=False,
                                                rich_help_panel=P_RUN)] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="BLAS threads of each worker (default: cores ÷ "
                                                "workers, at least 1).", show_default=False)] = None,
):
    """Train a character-level model on text files (or folders of them), on every core."""
    given = {
        "cell": cell, "layers": layers, "hidden": hidden, "embed": embed, "dropout": dropout, "dtype": dtype,
        "seq_len": seq_len, "batch_size": batch_size, "val_frac": val_frac, "optimizer": optimizer, "lr": lr,
        "lr_schedule": lr_schedule, "warmup": warmup, "weight_decay": weight_decay, "grad_clip": grad_clip,
        "seed": seed, "max_steps": max_steps, "epochs": epochs, "max_time": parse_duration(max_time),
        "eval_every": eval_every, "patience": patience, "sample_every": sample_every, "workers": workers,
    }
    world = mpi_world()  # started by mpiexec: the ranks are the workers
    if world is not None and world.rank != 0:
        _follow(world, threads)
        return
    try:
        if world is not None and workers not in (None, world.size):
            raise ConfigError(f"--workers {workers} under mpiexec -n {world.size}: the MPI ranks are the "
                              "workers (leave --workers out, or make it equal)")
        trainer = _build_trainer(corpus or None, glob, resume, init_from, out_dir, given)
    except BaseException as e:
        if world is not None:  # the other ranks end quietly with the same status; this one says why
            world.bcast(int(getattr(e, "exit_code", 1)))
        raise
    _run_training(trainer, resumed=resume is not None, threads=threads, world=world)


def _build_trainer(corpus: list[Path] | None, glob: str | None, resume: Path | None, init_from: Path | None,
                   out_dir: Path | None, given: dict):
    _check_choice("--cell", given["cell"], CELL_TYPES)
    _check_choice("--optimizer", given["optimizer"], OPTIMIZERS)
    _check_choice("--lr-schedule", given["lr_schedule"], SCHEDULES)
    _check_choice("--dtype", given["dtype"], ("float32", "float64"))
    from tqdm import tqdm

    reading = tqdm(unit="B", unit_scale=True, desc="reading and encoding the corpus (2 passes)", file=sys.stderr,
                   disable=None, leave=False, delay=1.0)  # shows only when it takes more than a second
    if resume is not None:
        if init_from is not None:
            raise ConfigError("--resume and --init-from cannot be combined")
        with reading:
            trainer = resume_trainer(resume, corpus, given, on_bytes=reading.update, glob=glob)
    else:
        if corpus is None:
            corpus = [DEFAULT_CORPUS]
            if not DEFAULT_CORPUS.exists():
                raise CorpusError(f"the bundled corpus is not at {DEFAULT_CORPUS}; pass a text file")
        opts = TrainOptions(**{k: v for k, v in given.items() if v is not None})
        if given["epochs"] is None and (given["max_steps"] is not None or given["max_time"] is not None):
            opts.epochs = None  # a step or time budget given alone replaces the default epoch budget
        with reading:
            trainer = new_trainer(corpus, out_dir or default_run_dir(corpus[0]), opts, init_from,
                                  on_bytes=reading.update, glob=glob or DEFAULT_GLOB)
    return trainer


def _stop_on_signals(trainer) -> dict:
    """SIGINT/SIGTERM ask the loop to stop after this step (it saves, then we exit 130/143)."""

    def on_signal(signum, frame):
        trainer.stop_request = "SIGINT" if signum == signal.SIGINT else "SIGTERM"

    return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


def _budget(o) -> str:
    """The stopping budget in words: whichever of steps, epochs and time comes first."""
    parts = []
    if o.max_steps:
        parts.append(f"{o.max_steps:,} steps")
    if o.epochs:
        parts.append(f"{o.epochs} epoch{'s' if o.epochs > 1 else ''}")
    if o.max_time:
        t = o.max_time
        parts.append(f"{t / 3600:g}h" if t >= 3600 else f"{t / 60:g}m" if t >= 60 else f"{t:g}s")
    return " or ".join(parts) + (" (whichever first)" if len(parts) > 1 else "") if parts else "none (until Ctrl-C)"


def _follow(world, threads: int | None) -> None:
    """An MPI rank other than 0: join rank 0's run, train, print nothing (rank 0 reports)."""
    bp = world.bcast(None)
    if isinstance(bp, int):  # rank 0 could not set the run up, and has said why
        raise typer.Exit(bp)
    try:
        trainer = join_world(bp, world, threads)
        _stop_on_signals(trainer)
        summary = trainer.run()
    except LstmgenError as e:
        err.print(f"[bold red]error:[/] rank {world.rank}: {escape(str(e))}")
        world.kill(e.exit_code)
        raise
    if summary.stop_reason in ("SIGINT", "SIGTERM"):
        raise typer.Exit(130 if summary.stop_reason == "SIGINT" else 143)


def _check_choice(flag: str, value: str | None, choices) -> None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=flag)


def _run_training(trainer, resumed: bool, threads: int | None, world=None) -> None:
    for w in trainer.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    group = start_workers(trainer, threads, world)  # from here on, every error must stop the workers too
    try:
        _train_loop(trainer, group, resumed)
    except typer.Exit:  # the workers stopped with this process (an interrupted run)
        raise
    except BaseException as e:
        if world is not None:  # Abort ends this rank too: say why first
            err.print(f"[bold red]error:[/] {escape(str(e) if isinstance(e, LstmgenError) else repr(e))}")
            world.kill(getattr(e, "exit_code", 1))
        group.kill()
        raise
    finally:
        group.close()
        trainer.close()


def _train_loop(trainer, group, resumed: bool) -> None:
    from tqdm import tqdm

    cfg, o = trainer.model.cfg, trainer.opts
    n = group.workers
    rows = f"{trainer.B // n}–{-(-trainer.B // n)}" if trainer.B % n else f"{trainer.B // n}"
    workers = (f"{n} workers ({group.kind}, {rows} rows each, {get_threads() or '?'} BLAS thread"
               f"{'s' if (get_threads() or 1) > 1 else ''} each)" if n > 1
               else f"1 worker ({get_threads() or '?'} BLAS threads)")
    err.print(
        f"{'resuming' if resumed else 'training'} on {escape(trainer.corpus_path.name)}: "
        f"{trainer.n_chars:,} chars, vocab {len(trainer.vocab)} | {cfg.cell} {cfg.layers}×{cfg.hidden}, "
        f"embed {cfg.embed}, dropout {cfg.dropout:g}, {trainer.model.num_params:,} params, {cfg.dtype} | "
        f"batch {trainer.B}×{trainer.T}, {o.optimizer} lr {o.lr:g} ({o.lr_schedule}) | {workers} | "
        f"budget: {_budget(o)} | "
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

    old = _stop_on_signals(trainer)
    try:
        summary = trainer.run(on_progress)
    except WorkerLost as e:
        raise LstmgenError(f"{e}; training stopped at step {trainer.step} with every worker ended; the last "
                           f"checkpoint is intact: continue with lstmgen train --resume "
                           f"{trainer.run_dir}") from None
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
    num_samples: Annotated[int, typer.Option(min=1, help="How many samples, generated together as one batch "
                                             "(each with its own random stream and --stop); the first streams "
                                             "as it is generated, the others follow, each after an empty "
                                             "line.")] = 1,
    stop: Annotated[str | None, typer.Option(help="End a sample right after this string is generated.")] = None,
    threads: Threads = None,
):
    """Generate text from a trained model; it streams to stdout.

    Prints the prime text, then LENGTH generated characters. Several samples are separated by
    an empty line. The same checkpoint, options and --seed give byte-identical output.
    """
    _use_threads(threads)
    check_options(temperature, top_k, top_p)
    if top_p == 0:
        raise ConfigError("--top-p must be greater than 0")
    model, vocab, _ = _load_model(ckpt)
    vocab.encode(prime, "prime text")  # unknown characters: an error naming them, before any output
    tty = sys.stdout.isatty()
    w = sys.stdout
    if num_samples == 1:
        steps = ([ch] for ch in generate(model, vocab, length, prime=prime, temperature=temperature, top_k=top_k,
                                         top_p=top_p, rng=np.random.default_rng(seed), stop=stop))
    else:  # all samples as one batch; the first streams, the others are printed when it is done
        steps = generate_many(model, vocab, length, num_samples, prime=prime, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=seed, stop=stop)
    rest = [[] for _ in range(num_samples - 1)]
    w.write(prime)
    for i, chars in enumerate(steps):
        if chars[0] is not None:
            w.write(chars[0])
            if tty or i % 64 == 63:
                w.flush()
        for buf, ch in zip(rest, chars[1:]):
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
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")],
    file: Annotated[Path, typer.Argument(help="UTF-8 text to score.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    threads: Threads = None,
):
    """Loss, bits per character and perplexity of a text under a model.

    The whole file is read as one sequence from a zero state, without dropout; the loss is the
    mean of −ln p(x_t | x_0 … x_{t−1}) over t = 1 … N−1, in nats.
    """
    _use_threads(threads)
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


@app.command(epilog="Example: lstmgen inspect runs/default --text 'She said \"yes\" (twice).' --top-units 3")
@boundary
def inspect(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint file or run directory.")],
    text: Annotated[str | None, typer.Option(help="The text to run the model over.", rich_help_panel=P_TEXT)] = None,
    file: Annotated[Path | None, typer.Option(help="Read the text from this UTF-8 file.",
                                              rich_help_panel=P_TEXT)] = None,
    max_chars: Annotated[int, typer.Option(min=1, help="Use at most this many characters of --file.",
                                           rich_help_panel=P_TEXT)] = 20_000,
    warmup: Annotated[str, typer.Option(help="Context run before the text (not shown), so the state is "
                                        "not the zero state.", rich_help_panel=P_TEXT)] = "",
    warmup_chars: Annotated[int, typer.Option(min=0, help="Use the first N characters of the text as "
                                              "warm-up context only.", rich_help_panel=P_TEXT)] = 0,
    layer: Annotated[int | None, typer.Option(help="Layer of the table and heat maps, from 0. (default: last)",
                                              rich_help_panel=P_SHOW)] = None,
    units: Annotated[str | None, typer.Option(help="Show these units, e.g. 3,17,42.", rich_help_panel=P_SHOW)] = None,
    top_units: Annotated[int | None, typer.Option(min=1, help="Show the K units ranked first by --rank-by.",
                                                  rich_help_panel=P_SHOW)] = None,
    rank_by: Annotated[str, typer.Option(help="variance, saturation or mean (|value|) of --quantity over the "
                                         "text.", rich_help_panel=P_SHOW)] = "variance",
    quantity: Annotated[str | None, typer.Option(help="Quantity that ranks units and colours the heat map "
                                                 "(default: c for LSTMs, h otherwise).",
                                                 rich_help_panel=P_SHOW)] = None,
    quantities: Annotated[str | None, typer.Option(help="Table columns, e.g. i,f,o (default: all of the "
                                                   "cell's).", rich_help_panel=P_SHOW)] = None,
    top_k: Annotated[int, typer.Option(min=1, help="Next-character guesses shown per row.",
                                       rich_help_panel=P_SHOW)] = 3,
    start: Annotated[int, typer.Option(min=0, help="First character shown in the table and heat maps.",
                                       rich_help_panel=P_SHOW)] = 0,
    rows: Annotated[int, typer.Option(min=0, help="Table rows (characters); 0 hides the table.",
                                      rich_help_panel=P_SHOW)] = 40,
    heat_chars: Annotated[int, typer.Option(min=0, help="Characters per heat map; 0 hides them.",
                                            rich_help_panel=P_SHOW)] = 800,
    probe_spec: Annotated[str | None, typer.Option("--probe", help="Rank units by how well they track quotes, "
                                                   "brackets, line-position, indent or regex:PATTERN.",
                                                   rich_help_panel=P_SHOW)] = None,
    params: Annotated[bool, typer.Option("--params", help="Add the parameter summary (every tensor and gate "
                                         "block) and the training state.", rich_help_panel=P_SHOW)] = False,
    html: Annotated[Path | None, typer.Option(help="Also write the view as a standalone HTML page.",
                                              rich_help_panel=P_OUT)] = None,
    export: Annotated[Path | None, typer.Option(help="Write every gate, state and prediction to a .npz "
                                                "(CONTRACTS.md §1).", rich_help_panel=P_OUT)] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write every value in long format: t, char, "
                                                  "layer, unit, quantity, value.", rich_help_panel=P_OUT)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the view's data as one JSON object on stdout.",
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
    _use_threads(threads)
    model, vocab, ck = _load_model(ckpt)
    cfg = model.cfg
    names = probe.quantities(cfg.cell)
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
    if text is not None and file is not None:
        raise ConfigError("--text and --file cannot be combined")
    if probe_spec is not None:
        probe.parse_probe(probe_spec)  # the spec's syntax, before any work

    if text is not None:
        source = "--text"
    elif file is not None:
        text = read_text(file, "inspect")
        source = escape(str(file))
        if len(text) > max_chars + warmup_chars:
            err.print(f"[yellow]warning:[/] using the first {max_chars + warmup_chars:,} of {len(text):,} "
                      "characters (--max-chars)")
            text = text[: max_chars + warmup_chars]
    else:
        text, source = probe.default_text(ck.meta, model, vocab)
    if warmup_chars:
        warmup, text = warmup + text[:warmup_chars], text[warmup_chars:]
    if not text:
        raise CorpusError(f"the text to inspect is empty ({source})")

    from tqdm import tqdm

    with tqdm(total=len(text), unit="char", file=sys.stderr, disable=len(text) < 20_000 or None,
              desc="tracing", leave=False) as bar:
        trace = probe.trace_text(model, vocab, text, warmup=warmup, on_chunk=bar.update)
    if export is not None:
        probe.export_npz(export, trace)
        err.print(f"wrote {escape(str(export))}: {trace.T:,} characters × {cfg.layers} layer(s) × "
                  f"{', '.join(names)} and probs")
    if csv_path is not None:
        probe.export_csv(csv_path, trace)
        err.print(f"wrote {escape(str(csv_path))}: {trace.T * cfg.layers * len(names) * cfg.hidden:,} rows")

    if chosen is None and top_units is not None:
        order, _ = probe.rank_units(trace.layers[layer][quantity], rank_by, quantity)
        chosen = [int(j) for j in order[:top_units]]
    heat_units = chosen if chosen is not None else [
        int(probe.rank_units(trace.layers[layer][quantity], rank_by, quantity)[0][0])]
    sats = probe.saturation(trace)
    found = probe.probe(trace, probe_spec) if probe_spec is not None else None
    param_rows = probe.param_summary(cfg, model.params) if params else None

    if as_json:
        print(json.dumps(_inspect_json(trace, vocab, ck, layer, chosen, shown_q, quantity, rank_by, top_k, sats,
                                       found, param_rows, source), allow_nan=False))
    if (export is not None or csv_path is not None or as_json) and html is None:
        return
    machine = export is not None or csv_path is not None or as_json  # then the view is only for --html
    product = Console(highlight=False, file=io.StringIO() if machine else None, record=html is not None)
    loss_bits = float(np.nanmean(trace.surprisal_bits())) if trace.T > 1 else float("nan")
    header = Text(f"{cfg.cell} {cfg.layers}×{cfg.hidden} · step {ck.meta.get('train', {}).get('step', '?')} · "
                  f"{trace.T:,} characters of {source}" + (f" after {len(warmup):,} of warm-up" if warmup else "")
                  + (f" · {loss_bits:.3f} bits/char" if math.isfinite(loss_bits) else ""), style="bold")
    product.print(header)
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
        if start + rows < trace.T:
            product.print(Text(f"rows {start}–{min(trace.T, start + rows) - 1} of {trace.T}; --start and --rows "
                               "show others", style="dim"))
        product.print()
    if heat_chars > 0 and start < trace.T:
        for j in heat_units[:3]:
            product.print(view.heatmap(trace, layer, quantity, j, start, heat_chars))
    if sats:
        product.print(view.saturation_table(sats, cfg.cell, trace.T))
        product.print()
    if found is not None:
        product.print(view.probe_table(found, top=10))
        product.print()
        if heat_chars > 0:
            for u in found.ranking[:3]:
                product.print(view.heatmap(trace, u.layer, u.quantity, u.unit, start, heat_chars,
                                           title=f"layer {u.layer} {u.quantity}[{u.unit}] ({found.label.name} "
                                                 f"{u.score:+.3f})"))
    if html is not None:
        try:
            product.save_html(str(html), inline_styles=True)
        except OSError as e:
            raise LstmgenError(f"cannot write {html}: {e.strerror or e}") from e
        err.print(f"wrote {escape(str(html))}")


def _inspect_json(trace, vocab, ck, layer, units, shown_q, quantity, rank_by, top_k, sats, found, param_rows,
                  source) -> dict:
    cfg = ck.config
    top_ids, top_p = trace.top_predictions(top_k)
    bits = trace.surprisal_bits()
    steps = []
    for t in range(trace.T):
        vals = {q: (trace.layers[layer][q][t].mean() if units is None else trace.layers[layer][q][t][units]).tolist()
                for q in shown_q}
        steps.append({"t": t, "char": trace.text[t], "values": vals,
                      "top": [[vocab.chars[int(i)], float(p)] for i, p in zip(top_ids[t], top_p[t])],
                      "surprisal_bits": None if t + 1 >= trace.T else float(bits[t])})
    doc = {
        "model": {**cfg.to_dict(), "step": ck.meta.get("train", {}).get("step")},
        "source": source, "text": trace.text, "warmup": trace.warmup, "layer": layer,
        "units": units, "unit_values": "mean over units" if units is None else "per unit", "quantity": quantity,
        "rank_by": rank_by, "steps": steps,
        "saturation": [{"layer": s.layer, "gate": s.gate, "left": float(s.left.mean()), "right": float(s.right.mean()),
                        "mostly_left": s.mostly_left, "mostly_right": s.mostly_right,
                        "left_per_unit": s.left.tolist(), "right_per_unit": s.right.tolist()} for s in sats],
    }
    if found is not None:
        doc["probe"] = {"label": found.label.name, "description": found.label.description,
                        "measure": "auc" if found.label.binary else "correlation", "chance": found.chance,
                        "ranking": [{"layer": u.layer, "quantity": u.quantity, "unit": u.unit, "score": u.score,
                                     "strength": u.strength} for u in found.ranking[:50]]}
    if param_rows is not None:
        doc["params"] = [{"name": r.name, "shape": list(r.shape), "count": r.count, "mean": r.mean, "std": r.std,
                          "norm": r.norm, "block": r.block} for r in param_rows]
    return doc


def main() -> None:
    app()
