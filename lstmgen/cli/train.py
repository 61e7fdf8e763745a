"""lstmgen train: set a run up (files, resume, workers, MPI), show its progress, stop it cleanly."""


from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from lstmgen.cli.base import (
    LN2,
    P_DATA,
    P_MODEL,
    P_OPT,
    P_RUN,
    app,
    boundary,
    check_choice,
    err,
    parse_duration,
    safe,
)
from lstmgen.config import CELL_TYPES, DIRECTIONS
from lstmgen.corpus import DEFAULT_GLOB, corpus_label
from lstmgen.errors import ConfigError, CorpusError, LstmgenError
from lstmgen.generate import generate
from lstmgen.machine import warnings as machine_warnings
from lstmgen.optim import OPTIMIZERS, SCHEDULES
from lstmgen.parallel import WorkerLost, mpi_world
from lstmgen.rundir import default_run_dir
from lstmgen.terminal import shown
from lstmgen.text import DEFAULT_CORPUS, named_corpus
from lstmgen.threads import get_threads
from lstmgen.training import TrainOptions, join_world, new_trainer, resume_trainer, start_workers

D = TrainOptions()  # the defaults, as the help shows them


# options declared here, used by ``train`` (whose signature is long enough)
ValChars = Annotated[int | None, typer.Option("--val-chars", metavar="N", min=0, help="Characters of the held-out "
                                              "tail each validation reads: evenly spaced spans, the same every "
                                              f"time; 0: all of it. (default {D.val_chars:,})",
                                              rich_help_panel=P_DATA)]
Resume = Annotated[Path | None, typer.Option("--resume", metavar="DIR", help="Continue the run in this directory "
                                             "exactly.", rich_help_panel=P_RUN)]
InitFrom = Annotated[Path | None, typer.Option("--init-from", metavar="CKPT", help="Start from this checkpoint's "
                                               "weights (fine-tuning).", rich_help_panel=P_RUN)]
Workers = Annotated[int | None, typer.Option("--workers", metavar="N", min=1, help="Data-parallel worker processes, "
                                             "each on its rows of every batch (default: one per core, at least 4 "
                                             "rows each; a resumed run: its own count). Under mpiexec the MPI ranks "
                                             "are the workers.", show_default=False, rich_help_panel=P_RUN)]
ThreadsEach = Annotated[int | None, typer.Option("--threads", metavar="N", min=1, max=1024,
                                                 help="BLAS threads of each worker (default: cores ÷ workers, at "
                                                 "least 1).", show_default=False)]


@app.command(epilog="Example: lstmgen train corpora/default.txt --max-time 5m --out runs/demo")
@boundary
def train(
    corpus: Annotated[list[Path] | None, typer.Argument(metavar="CORPUS",
        help="UTF-8 text files and/or directories, read in order as one text; @default and @structured name "
             "the corpora shipped with lstmgen (default: @default).",
        show_default=False)] = None,
    glob: Annotated[str | None, typer.Option(metavar="PATTERN",
                                             help="Which files of a CORPUS directory to read (recursively, sorted, "
                                             "hidden ones skipped). (default *.txt)", rich_help_panel=P_DATA)] = None,
    cell: Annotated[str | None, typer.Option(metavar="NAME",
                                             help=f"Recurrent cell: {', '.join(CELL_TYPES)}. (default {D.cell})",
                                             rich_help_panel=P_MODEL)] = None,
    direction: Annotated[str | None, typer.Option(metavar="NAME",
                                                  help="fwd: a left-to-right language model; bi: a bidirectional "
                                                  "cloze model (each character from both sides; generate with "
                                                  "lstmgen fill). (default fwd)", rich_help_panel=P_MODEL)] = None,
    layers: Annotated[int | None, typer.Option(metavar="N", min=1, help=f"Stacked layers. (default {D.layers})",
                                               rich_help_panel=P_MODEL)] = None,
    hidden: Annotated[int | None, typer.Option(metavar="N", min=1, help=f"Hidden units per layer. (default {D.hidden})",
                                               rich_help_panel=P_MODEL)] = None,
    embed: Annotated[int | None, typer.Option(metavar="N", min=1, help=f"Embedding size. (default {D.embed})",
                                              rich_help_panel=P_MODEL)] = None,
    dropout: Annotated[float | None, typer.Option(metavar="X", help="Dropout between layers and before "
                                                  f"the output layer. (default {D.dropout:g})",
                                                  rich_help_panel=P_MODEL)] = None,
    dtype: Annotated[str | None, typer.Option(metavar="NAME", help=f"float32 or float64. (default {D.dtype})",
                                              rich_help_panel=P_MODEL)] = None,
    seq_len: Annotated[int | None, typer.Option(metavar="N",
                                                min=1, help=f"Truncated BPTT length T. (default {D.seq_len})",
                                                rich_help_panel=P_DATA)] = None,
    batch_size: Annotated[int | None, typer.Option(metavar="N", min=1, help="Parallel streams B (state carried across "
                                                   f"batches). (default {D.batch_size})",
                                                   rich_help_panel=P_DATA)] = None,
    val_frac: Annotated[float | None, typer.Option(metavar="X", help="Held-out tail of the corpus. "
                                                   f"(default {D.val_frac:g})", rich_help_panel=P_DATA)] = None,
    val_chars: ValChars = None,
    optimizer: Annotated[str | None, typer.Option(metavar="NAME",
                                                  help=f"{', '.join(OPTIMIZERS)}. (default {D.optimizer})",
                                                  rich_help_panel=P_OPT)] = None,
    lr: Annotated[float | None, typer.Option(metavar="X", help=f"Learning rate, > 0. (default {D.lr:g})",
                                             rich_help_panel=P_OPT)] = None,
    lr_schedule: Annotated[str | None, typer.Option(metavar="NAME",
                                                    help=f"{', '.join(SCHEDULES)} (cosine: linear warm-up, "
                                                    f"decay to 10 %). (default {D.lr_schedule})",
                                                    rich_help_panel=P_OPT)] = None,
    warmup: Annotated[int | None, typer.Option(metavar="N", min=0, help=f"Warm-up steps. (default {D.warmup})",
                                               rich_help_panel=P_OPT)] = None,
    weight_decay: Annotated[float | None, typer.Option(metavar="X", min=0.0, help="Weight decay on weight matrices "
                                                       f"(decoupled for adamw). (default {D.weight_decay:g})",
                                                       rich_help_panel=P_OPT)] = None,
    grad_clip: Annotated[float | None, typer.Option(metavar="X", min=0.0, help="Clip by global norm; 0 = off. "
                                                    f"(default {D.grad_clip:g})",
                                                    rich_help_panel=P_OPT)] = None,
    seed: Annotated[int | None, typer.Option(metavar="N", min=0, help=f"Random seed, ≥ 0. (default {D.seed})",
                                             rich_help_panel=P_OPT)] = None,
    max_steps: Annotated[int | None, typer.Option(metavar="N", min=1, help="Stop at this step (counts the whole run).",
                                                  rich_help_panel=P_RUN)] = None,
    epochs: Annotated[int | None, typer.Option(metavar="N", min=1, help="Stop after this many epochs (whole run). "
                                               f"(default {D.epochs})", rich_help_panel=P_RUN)] = None,
    max_time: Annotated[str | None, typer.Option(metavar="DURATION",
                                                 help="Time budget of this invocation: 90s, 10m, 1h.",
                                                 rich_help_panel=P_RUN)] = None,
    eval_every: Annotated[int | None, typer.Option(metavar="N", min=1, help="Validate and save every N steps. "
                                                   f"(default {D.eval_every})", rich_help_panel=P_RUN)] = None,
    patience: Annotated[int | None, typer.Option(metavar="N",
                                                 min=1, help="Stop after N evaluations without improvement.",
                                                 rich_help_panel=P_RUN)] = None,
    sample_every: Annotated[int | None, typer.Option(metavar="N",
                                                     min=1, help="Print a short sample to stderr every N steps.",
                                                     rich_help_panel=P_RUN)] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR",
                                                 help="Run directory (default: runs/<corpus name>, "
                                                 "never another run's).", rich_help_panel=P_RUN)] = None,
    resume: Resume = None,
    init_from: InitFrom = None,
    workers: Workers = None,
    threads: ThreadsEach = None,
):
    """Train a character-level model on text files (or folders of them), on every core."""
    given = {
        "cell": cell, "direction": direction, "layers": layers, "hidden": hidden, "embed": embed, "dropout": dropout,
        "dtype": dtype, "seq_len": seq_len, "batch_size": batch_size, "val_frac": val_frac, "val_chars": val_chars,
        "optimizer": optimizer, "lr": lr, "lr_schedule": lr_schedule, "warmup": warmup, "weight_decay": weight_decay,
        "grad_clip": grad_clip,
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
    return _run_training(trainer, resumed=resume is not None, threads=threads, world=world)


def _build_trainer(corpus: list[Path] | None, glob: str | None, resume: Path | None, init_from: Path | None,
                   out_dir: Path | None, given: dict):
    corpus = [named_corpus(p) for p in corpus] if corpus else None
    check_choice("--cell", given["cell"], CELL_TYPES)
    check_choice("--direction", given["direction"], tuple(DIRECTIONS))  # (jordan + bi: refused by its network)
    check_choice("--optimizer", given["optimizer"], OPTIMIZERS)
    check_choice("--lr-schedule", given["lr_schedule"], SCHEDULES)
    check_choice("--dtype", given["dtype"], ("float32", "float64"))
    from tqdm.auto import tqdm

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


INTERRUPTED = {"SIGINT": 130, "SIGTERM": 143}  # exit codes of a run stopped by a signal (after saving)


def _stop_on_signals(trainer) -> dict:
    """SIGINT/SIGTERM ask the loop to stop after this step (it saves, then we exit 130/143)."""

    def on_signal(signum, frame):
        trainer.stop_request = "SIGINT" if signum == signal.SIGINT else "SIGTERM"

    if threading.current_thread() is not threading.main_thread():  # (lstmgen.train from a thread: no handlers)
        return {}
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


def _validation(trainer) -> str:
    """What each validation reads, in words: all of the held-out tail, or how much of it."""
    held = len(trainer.val_ids)
    if held < 2:
        return "no validation (--val-frac 0)"
    n, limit = trainer.val_rows[0].size, trainer.opts.val_chars
    whole = trainer.model.network.eval_rows(trainer.val_ids, trainer.B, trainer.T)[0].size  # (a reshape)
    if limit and whole > limit:  # validation_rows' own condition for cutting
        return f"validation: {n:,} of {held:,} held-out chars, the same each time (--val-chars 0: all)"
    return f"validation: all {held:,} held-out chars"


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
        err.print(f"[bold red]error:[/] rank {world.rank}: {safe(e)}")
        world.kill(e.exit_code)
        raise
    if summary.stop_reason in INTERRUPTED:
        raise typer.Exit(INTERRUPTED[summary.stop_reason])


def _run_training(trainer, resumed: bool, threads: int | None, world=None) -> Path:
    """Train to the end; the run directory (an interrupted run: typer.Exit(130/143) after saving)."""
    for w in [*trainer.warnings, *machine_warnings()]:
        err.print(f"[yellow]warning:[/] {safe(w)}")
    group = start_workers(trainer, threads, world)  # from here on, every error must stop the workers too
    try:
        return _train_loop(trainer, group, resumed)
    except typer.Exit:  # the workers stopped with this process (an interrupted run)
        raise
    except BaseException as e:
        if world is not None:  # Abort ends this rank too: say why first
            err.print(f"[bold red]error:[/] {safe(str(e) if isinstance(e, LstmgenError) else repr(e))}")
            world.kill(getattr(e, "exit_code", 1))
        group.kill()
        raise
    finally:
        group.close()
        trainer.close()


def _train_loop(trainer, group, resumed: bool) -> Path:
    from tqdm.auto import tqdm  # a notebook's own bar under Jupyter (lstmgen.train), else the terminal's

    cfg, o = trainer.model.cfg, trainer.opts
    n = group.workers
    rows = f"{trainer.B // n}–{-(-trainer.B // n)}" if trainer.B % n else f"{trainer.B // n}"
    per = f"{rows} row{'' if rows == '1' else 's'} each"
    workers = (f"{n} workers ({group.kind}, {per}, {get_threads() or '?'} BLAS thread"
               f"{'s' if (get_threads() or 1) > 1 else ''} each)" if n > 1
               else f"1 worker ({get_threads() or '?'} BLAS threads)")
    err.print(
        f"{'resuming' if resumed else 'training'} on {safe(corpus_label(trainer.corpus_meta))}: "
        f"{trainer.n_chars:,} chars, vocab {len(trainer.vocab)} | {cfg.summary()}"
        f"{trainer.model.network.description}, "
        f"embed {cfg.embed}, dropout {cfg.dropout:g}, {trainer.model.num_params:,} params, {cfg.dtype} | "
        f"batch {trainer.B}×{trainer.T}, {o.optimizer} lr {o.lr:g} ({o.lr_schedule}) | {workers} | "
        f"budget: {_budget(o)} | {_validation(trainer)} | "
        f"run dir {safe(trainer.run_dir)}"
    )
    total = trainer.total_steps
    bar = tqdm(total=total, initial=trainer.step, unit="step", file=sys.stderr, dynamic_ncols=True,
               disable=None, smoothing=0.05)
    sample_rng = np.random.default_rng(o.seed)

    def on_progress(p):
        bar.n = p.step
        val = f"{p.val_loss:.3f}" if p.val_loss is not None else "-"
        bpc = f"{p.val_loss / LN2:.3f}" if p.val_loss is not None else "-"
        clip = f" clipped {p.clipped:.0%}" if p.clipped > 0 else ""  # the steps whose gradient --grad-clip cut
        bar.set_postfix_str(f"ep {p.epoch} train {p.train_loss:.3f} val {val} bpc {bpc}{clip} "
                            f"{p.chars_per_sec / 1000:.1f}k char/s", refresh=False)
        bar.update(0)
        if p.event == "eval" and bar.disable:
            print(f"step {p.step} epoch {p.epoch}: train {p.train_loss:.4f} val {val} bpc {bpc}{clip} "
                  f"lr {p.lr:.2e} {p.chars_per_sec:,.0f} char/s", file=sys.stderr, flush=True)
        if p.event == "sample":
            text = "".join(generate(trainer.model, trainer.vocab, 200, temperature=0.8, rng=sample_rng))
            text = "\n".join(shown(line) for line in text.split("\n"))  # (a corpus may hold escape codes)
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
    where = safe(summary.run_dir)
    if summary.stop_reason in INTERRUPTED:
        err.print(f"[yellow]interrupted ({summary.stop_reason}) at step {summary.step}:[/] saved "
                  f"{where}/latest.npz; continue with: lstmgen train --resume {where}")
        raise typer.Exit(INTERRUPTED[summary.stop_reason])
    best = summary.best_val_loss
    best_s = f"best val loss {best:.4f} ({best / LN2:.3f} bits/char)" if best is not None else "no validation"
    saved = " and ".join(n for n in ("best.npz", "latest.npz") if (summary.run_dir / n).exists())
    err.print(f"[green]done[/] ({summary.stop_reason}) after {summary.step} steps, {summary.epoch} epochs: "
              f"{best_s}; saved {where}/{saved}")
    err.print(f"curves: lstmgen plot {where}   all runs: lstmgen runs {safe(summary.run_dir.parent)}")
    return summary.run_dir


