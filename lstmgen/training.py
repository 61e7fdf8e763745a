"""The training loop and the run directory. No printing: progress goes to a callback.

Each step reads top to bottom: stop check → learning rate for this step → batch (state reset at
the start of every epoch) → forward/backward → finite check → clip → optimizer step →
periodic validation, metrics and checkpoints.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from lstmgen import __version__
from lstmgen import checkpoint as ckpt_io
from lstmgen.corpus import DEFAULT_GLOB, Corpus, corpus_label, load_corpus, recorded_inputs, resolve_inputs
from lstmgen.dropout import RowStreams
from lstmgen.errors import ConfigError, CorpusError, DivergenceError, LstmgenError, VocabError
from lstmgen.model import CharLM, ModelConfig
from lstmgen.optim import Optimizer, clip_grad_norm_, lr_at
from lstmgen.parallel import SOLO, LocalGroup, available_cores, default_workers
from lstmgen.rundir import RunLock, prepare_run_dir, remove_if_unused
from lstmgen.runs import read_metrics
from lstmgen.terminal import shown
from lstmgen.text import BatchStream, Vocab, fit_batch, split, visible
from lstmgen.threads import after_fork, set_threads

# options that define the model and its data: fixed for the life of a run
MODEL_KEYS = ("cell", "layers", "hidden", "embed", "dropout", "dtype", "direction")
# the stopping budget: whichever comes first; given anew (new run or resume), they replace the defaults
BUDGETS = ("max_steps", "epochs", "max_time")


@dataclass
class TrainOptions:
    """Every training option, with the defaults a user who passes only a file gets."""

    # Model and optimisation defaults: the best learning per minute found on a 2-core machine
    # (benchmarks/RESULTS.md: 4-minute probes on tinyshakespeare, then 10 minutes against
    # PyTorch; one 384-unit layer beat 2×256, 2×384 and 1×512, B32 beat B64, lr 4e-3 beat 2e-3/3e-3).
    cell: str = "lstm"
    direction: str = "fwd"  # "bi": a bidirectional cloze model (lstmgen.cloze)
    layers: int = 1
    hidden: int = 384
    embed: int = 64
    dropout: float = 0.1
    seq_len: int = 100
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 4e-3
    lr_schedule: str = "cosine"
    warmup: int = 50
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    val_frac: float = 0.05
    eval_every: int = 200
    max_steps: int | None = None
    epochs: int | None = 20
    max_time: float | None = None  # seconds, this invocation
    patience: int | None = None
    seed: int = 1337
    dtype: str = "float32"
    sample_every: int | None = None
    workers: int | None = None  # data-parallel worker processes (None: chosen for the machine)

    def check(self) -> None:
        positive = ("layers", "hidden", "embed", "seq_len", "batch_size", "eval_every", "warmup")
        for name in positive:
            v = getattr(self, name)
            if v is None or v < (0 if name == "warmup" else 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.val_frac < 1:
            raise ConfigError(f"--val-frac must be in [0, 1), got {self.val_frac}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr}")
        for name in ("weight_decay", "grad_clip"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {v}")
        for name in ("max_steps", "epochs", "patience", "sample_every", "workers"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"--max-time must be positive, got {self.max_time}")
        if self.workers is not None and self.workers > self.batch_size:
            raise ConfigError(f"--workers {self.workers} is more than the batch size {self.batch_size}: "
                              "each worker needs at least one of the batch's rows")


class Span:
    """What metrics.jsonl's next line says about the steps since the previous one: the mean training
    loss, the mean global gradient norm before clipping, the share of steps that were clipped. A line
    that covers no new step repeats the previous line's values (``line``)."""

    def __init__(self, previous: dict | None = None):
        self.line = {"train_loss": math.nan, "grad_norm": math.nan, "clipped": 0.0, **(previous or {})}
        self._reset()

    def _reset(self) -> None:
        self.n, self.loss, self.norm, self.clipped = 0, 0.0, 0.0, 0

    def add(self, loss: float, norm: float, clipped: bool) -> None:
        self.n += 1
        self.loss, self.norm, self.clipped = self.loss + loss, self.norm + norm, self.clipped + clipped

    def peek(self) -> dict:
        """The values the line would hold now (the previous line's when no step was added)."""
        if not self.n:
            return dict(self.line)
        return {"train_loss": self.loss / self.n, "grad_norm": self.norm / self.n, "clipped": self.clipped / self.n}

    def close(self) -> dict:
        """The line's values; the next span starts empty."""
        self.line = self.peek()
        self._reset()
        return dict(self.line)

    def shown(self) -> dict:
        """What the progress bar shows between lines: the last line's values (before the first line
        of a new run, the steps so far)."""
        return self.peek() if math.isnan(self.line["train_loss"]) else dict(self.line)


@dataclass
class Progress:
    """What the loop reports to its callback after every step and evaluation."""

    step: int
    epoch: int
    batch: int
    batches_per_epoch: int
    total_steps: int | None
    train_loss: float  # as metrics.jsonl logs it: the mean over the steps before its last line
    val_loss: float | None
    best_val_loss: float | None
    lr: float
    chars_per_sec: float
    elapsed_s: float
    event: str = "step"  # "step", "eval", "sample"
    extra: dict = field(default_factory=dict)
    grad_norm: float = math.nan  # as metrics.jsonl logs them (global norm before clipping; share clipped)
    clipped: float = 0.0


@dataclass
class Summary:
    run_dir: Path
    step: int
    epoch: int
    best_val_loss: float | None
    last_val_loss: float | None
    stop_reason: str


# why a run stops, in the order they are reported when several apply at once
STOPS = ("SIGINT", "SIGTERM", "max-steps", "epochs", "max-time", "patience")


class Trainer:
    """Holds one run: corpus, model, optimizer, data position, carried state.

    With data-parallel workers (``use_group``) every worker holds a Trainer and runs the same
    loop on its rows of each batch: gradients, losses and stop requests are summed across the
    group, so every worker takes the same optimizer step; rank 0 alone writes and reports.
    """

    def __init__(self, run_dir: Path, opts: TrainOptions, corpus: Corpus, *, model: CharLM, optimizer: Optimizer,
                 meta_train: dict | None = None, state=None, lock: RunLock | None = None):
        self.run_dir, self.opts, self.lock = run_dir, opts, lock
        self.corpus_path, self.vocab, self.model, self.opt = corpus.path, corpus.vocab, model, optimizer
        self.corpus_meta, self.n_chars = corpus.meta(), corpus.n_chars
        train_ids, self.val_ids = split(corpus.ids, opts.val_frac)
        B, T, self.warnings = fit_batch(len(train_ids), opts.batch_size, opts.seq_len)
        self.B, self.T = B, T
        self.stream = BatchStream(train_ids, B, T)
        self.flat_g, self.grads = model.new_grads()
        mt = meta_train or {}
        self.step = int(mt.get("step", 0))
        self.epoch = int(mt.get("epoch", 0))
        self.batch = int(mt.get("batch", 0))
        self.best_val = mt.get("best_val_loss")
        self.last_val = mt.get("last_val_loss")
        self.bad_evals = int(mt.get("bad_evals", 0))
        # how far the cosine schedule had run by time when this invocation started (see lr)
        p0 = mt.get("schedule_progress", 0.0)
        self.progress0 = min(1.0, max(0.0, float(p0))) if isinstance(p0, int | float) and math.isfinite(p0) else 0.0
        self.t_start: float | None = None
        self.state = state if state is not None and self.batch > 0 else model.zero_state(B)
        if state is not None and state[0][0].shape[1] != B:
            self.state = model.zero_state(B)
        self.stop_request: str | None = None  # set from a signal handler, in this process only
        # the interruption every worker has agreed on (SIGINT/SIGTERM): every decision after an agreement
        # reads this, never stop_request, which a signal may set at any moment in one process only
        self.stopping: str | None = None
        self.group = SOLO
        self.use_group(SOLO)

    def use_group(self, group) -> None:
        """Run as one worker of ``group``: this worker's rows of every batch, its slice of the state."""
        full = self.full_state()  # (before the group changes: this worker holds all rows until now)
        self.group, self.rows = group, group.rows(self.B)
        self.masks = RowStreams(self.opts.seed, self.rows.start)  # dropout per global row
        self.state = [tuple(np.ascontiguousarray(a[:, self.rows]) for a in layer) for layer in full]

    def collective_bytes(self) -> int:
        """The largest array a worker group sums: the gradient, or the carried state (checkpoints)."""
        n_state = sum(a.size for layer in self.model.zero_state(self.B) for a in layer)
        return max(self.model.flat.size, n_state, 16) * self.model.flat.itemsize

    def close(self) -> None:
        """Let another process have the run directory."""
        if self.lock is not None:
            self.lock.release()

    # ------------------------------------------------------------------ budget
    @property
    def total_steps(self) -> int | None:
        limits = []
        if self.opts.max_steps:
            limits.append(self.opts.max_steps)
        if self.opts.epochs:
            limits.append(self.opts.epochs * self.stream.batches_per_epoch)
        return min(limits) if limits else None

    def time_progress(self) -> float | None:
        """With --max-time, how far the schedule has run by time: this invocation's budget maps the
        rest of the schedule (from where the previous invocation left it) onto the time given."""
        if not self.opts.max_time or self.t_start is None:
            return self.progress0 or None
        frac = min(1.0, (time.monotonic() - self.t_start) / self.opts.max_time)
        return self.progress0 + (1.0 - self.progress0) * frac

    def lr(self) -> float:
        return lr_at(self.step, self.opts.lr, self.opts.lr_schedule, total_steps=self.total_steps,
                     warmup=self.opts.warmup, progress=self.time_progress())

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> float | None:
        """Mean loss over the whole held-out tail, in parallel streams from a fresh state
        (with workers: each worker its block of the streams, the sums added up)."""
        if len(self.val_ids) < 2:
            return None
        x, y = eval_rows(self.val_ids, streams=self.B, chunk=self.T, whole=self.model.cfg.direction == "bi")
        block = self.group.rows(x.shape[0])
        sums = sum_losses(self.model, x[block], y[block], chunk=self.T, should_stop=self._interrupted)
        if sums is None:
            return math.nan
        totals = np.array(sums, dtype=np.float64)  # (Σ −ln p, positions)
        self.group.allreduce_(totals)
        return float(totals[0] / max(totals[1], 1.0))

    # ------------------------------------------------------------------ agreement between workers
    def _agree(self, local_stop: str | None, lr: float) -> tuple[str | None, float]:
        """Every worker's stop request (any one stops all) and rank 0's learning rate, the same everywhere."""
        ctrl = np.zeros(len(STOPS) + 1)
        if local_stop:
            ctrl[STOPS.index(local_stop)] = 1.0
        if self.group.rank == 0:  # rank 0's clock rules the time budget and the schedule
            ctrl[-1] = lr
        self.group.allreduce_(ctrl)
        stop = next((s for s, v in zip(STOPS, ctrl) if v > 0), None)
        if stop in ("SIGINT", "SIGTERM"):
            self.stopping = stop
        return stop, float(ctrl[-1])

    def _interrupted(self) -> bool:
        """Whether any worker was asked to stop (agreed: every worker answers the same)."""
        self._agree(self.stop_request if self.stop_request in STOPS[:2] else None, 0.0)
        return self.stopping is not None

    def _sum_gradients(self, loss: float) -> float:
        """Add up the workers' gradients, each weighted by its share of the rows, so that every worker
        holds the gradient of the mean loss over all B·T positions; returns that mean loss."""
        if self.group.size == 1:
            return loss
        share = (self.rows.stop - self.rows.start) / self.B
        if share:
            self.flat_g *= self.flat_g.dtype.type(share)
        self.group.allreduce_(self.flat_g)
        total = np.array([loss * share])
        self.group.allreduce_(total)
        return float(total[0])

    def full_state(self) -> list[tuple[np.ndarray, ...]]:
        """The carried state of all B rows (with workers: gathered by summing zero-padded blocks)."""
        if self.group.size == 1:
            return self.state
        rows = [a.shape[0] for layer in self.state for a in layer]  # each part (rows, this worker's b)
        buf = np.zeros(sum(rows) * self.B, dtype=self.model.flat.dtype)
        parts, off = [], 0
        for n in rows:  # (n, B) views of one flat buffer: one allreduce for everything
            parts.append(buf[off : off + n * self.B].reshape(n, self.B))
            off += n * self.B
        for view, a in zip(parts, (a for layer in self.state for a in layer)):
            view[:, self.rows] = a
        self.group.allreduce_(buf)
        it = iter(parts)
        return [tuple(next(it) for _ in layer) for layer in self.state]

    # ------------------------------------------------------------------ checkpoints
    def meta(self) -> dict:
        cfg = self.model.cfg
        return {
            "lstmgen_version": __version__,
            "vocab": self.vocab.chars,
            "model": {k: getattr(cfg, k) for k in MODEL_KEYS},
            "train": {
                **asdict(self.opts),
                "step": self.step, "epoch": self.epoch, "batch": self.batch,
                "effective_batch_size": self.B, "effective_seq_len": self.T,
                "best_val_loss": self.best_val, "last_val_loss": self.last_val,
                "bad_evals": self.bad_evals, "dropout_masks": "philox-per-row", "workers": self.group.workers,
                "schedule_progress": self.time_progress() or self.progress0,
            },
            "corpus": self.corpus_meta,
        }

    def checkpoint(self, state=None) -> ckpt_io.Checkpoint:
        return ckpt_io.Checkpoint(
            params=self.model.params, meta=self.meta(),
            optim=dict(self.opt.state),
            state=self.state if state is None else state,
        )

    def _diverged(self, when: str, why: str) -> DivergenceError:
        return DivergenceError(f"training diverged {when}: {why}; "
                               f"try a lower learning rate (--lr {suggested_lr(self.opts.lr):g})")

    def save(self, name: str) -> Path:
        """Write a checkpoint (rank 0; every worker takes part in gathering the carried state)."""
        state = self.full_state()
        path = self.run_dir / name
        if self.group.rank == 0:
            ckpt_io.save(path, self.checkpoint(state))
        return path

    def log(self, record: dict) -> None:
        if self.group.rank != 0:
            return
        path = self.run_dir / "metrics.jsonl"
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise LstmgenError(f"cannot write {path}: {e.strerror or e}") from e

    def logged_line(self) -> dict:
        """The training loss, gradient norm and clipped share of metrics.jsonl's last line (a resumed
        run's), or {} when there is none."""
        lines = read_metrics(self.run_dir)
        last = lines[-1] if lines else {}
        return {k: float(v) for k in ("train_loss", "grad_norm", "clipped")
                if isinstance(v := last.get(k), int | float)}

    # ------------------------------------------------------------------ the loop
    def run(self, on_progress: Callable[[Progress], None] | None = None) -> Summary:
        opts = self.opts
        on_progress = on_progress or (lambda p: None)
        t_start = self.t_start = time.monotonic()
        chars, first_step = 0, self.step
        span = Span(self.logged_line())  # the steps since metrics.jsonl's last line
        last_eval_step = None
        stop = None
        log_every = max(1, min(opts.eval_every, 10))
        while True:
            # stop check and learning rate, agreed by every worker
            if self.stopping or self.stop_request:
                stop = self.stopping or self.stop_request
            elif opts.max_steps and self.step >= opts.max_steps:
                stop = "max-steps"
            elif opts.epochs and self.epoch >= opts.epochs:
                stop = "epochs"
            elif opts.max_time and time.monotonic() - t_start >= opts.max_time:
                stop = "max-time"
            elif opts.patience and self.bad_evals >= opts.patience:
                stop = "patience"
            stop, lr = self._agree(stop, self.lr())
            if stop:
                break
            if self.batch == 0:  # a new epoch starts from a zero state
                self.state = self.model.zero_state(self.rows.stop - self.rows.start)
            masks = self.masks.at(self.step) if self.model.cfg.dropout > 0 else None
            if self.rows.stop > self.rows.start and self.model.cfg.direction == "bi":
                # each character from both sides; the backward stack first reads the next T characters
                x, right = self.stream.get_with_right(self.batch, self.T)  # (B, T), (B, ≤ T)
                loss, _, new_state, _ = self.model.cloze_loss_and_grads(x[self.rows], right[self.rows], self.state,
                                                                        rng=masks, grads=self.grads)
            elif self.rows.stop > self.rows.start:
                x, y = self.stream.get(self.batch)  # (B, T) each; this worker's rows
                loss, _, new_state, _ = self.model.loss_and_grads(x[self.rows], y[self.rows], self.state,
                                                                  rng=masks, grads=self.grads)
            else:  # a coordinator with no rows adds nothing to the sums
                loss, new_state = 0.0, self.state
                self.flat_g.fill(0.0)
            loss = self._sum_gradients(loss)  # every worker now holds the whole batch's gradient
            why = divergence(loss, len(self.vocab), "training loss")
            norm = clip_grad_norm_(self.flat_g, opts.grad_clip) if why is None else math.nan
            if why is None and not math.isfinite(norm):
                why = "the gradient is not finite"
            if why is not None:
                raise self._diverged(f"at step {self.step + 1}", why)
            self.opt.step(self.model.flat, self.flat_g, lr)
            self.state = new_state
            self.step += 1
            self.batch += 1
            if self.batch == self.stream.batches_per_epoch:
                self.batch, self.epoch = 0, self.epoch + 1
            chars += self.B * self.T
            span.add(loss, norm, 0 < opts.grad_clip < norm)
            now = time.monotonic()
            cps = chars / max(now - t_start, 1e-9)
            logs = self.step % opts.eval_every == 0 or self.step % log_every == 0
            line = span.close() if logs else span.shown()
            prog = Progress(self.step, self.epoch, self.batch, self.stream.batches_per_epoch, self.total_steps,
                            line["train_loss"], self.last_val, self.best_val, lr, cps, now - t_start,
                            grad_norm=line["grad_norm"], clipped=line["clipped"])  # the bar shows what is logged
            if self.step % opts.eval_every == 0:
                self._eval_and_save(prog, line)
                last_eval_step = self.step
                if self.stopping:
                    continue
            elif logs:
                self.log(self._record(prog, line, None))
            if opts.sample_every and self.step % opts.sample_every == 0:
                prog.event = "sample"
            on_progress(prog)
        # the end: evaluate (unless just done or interrupted), save latest
        spent = self.step == first_step > 0  # a resume whose budget was already spent: the run stays as it was
        if not spent and last_eval_step != self.step and not self.stopping and self.step > 0:
            now = time.monotonic()
            line = span.close()  # no step since the last line: its values again
            prog = Progress(self.step, self.epoch, self.batch, self.stream.batches_per_epoch,
                            self.total_steps, line["train_loss"], self.last_val, self.best_val,
                            self.lr(), chars / max(now - t_start, 1e-9), now - t_start,
                            grad_norm=line["grad_norm"], clipped=line["clipped"])
            self._eval_and_save(prog, line)
            on_progress(prog)
        elif not spent:
            self.save("latest.npz")
        return Summary(self.run_dir, self.step, self.epoch, self.best_val, self.last_val, stop or "done")

    def _record(self, prog: Progress, line: dict, val_loss: float | None) -> dict:
        return {"step": prog.step, "epoch": prog.epoch, "train_loss": _num(line["train_loss"]),
                "val_loss": _num(val_loss), "lr": prog.lr, "chars_per_sec": round(prog.chars_per_sec, 1),
                "elapsed_s": round(prog.elapsed_s, 3), "grad_norm": _num(line["grad_norm"]),
                "clipped": round(line["clipped"], 4)}

    def _eval_and_save(self, prog: Progress, line: dict) -> None:
        val = self.evaluate()
        if self.stopping:  # interrupted mid-validation: keep the training state, save latest
            self.save("latest.npz")
            return
        why = divergence(val, len(self.vocab), "validation loss") if val is not None else None
        if why is not None:
            raise self._diverged(f"by step {self.step}", why)
        self.last_val = val
        improved = val is not None and (self.best_val is None or val < self.best_val)
        if improved:
            self.best_val, self.bad_evals = val, 0
        elif val is not None:
            self.bad_evals += 1
        prog.val_loss, prog.best_val_loss, prog.event = val, self.best_val, "eval"
        self.log(self._record(prog, line, val))
        self.save("latest.npz")
        if improved or (val is None and self.step > 0):
            self.save("best.npz")


def divergence_limit(vocab_size: int) -> float:
    """The loss (nats per character) above which a run has diverged, whatever the CPU.

    A model that knows nothing (uniform guesses) scores ln V; healthy training starts there and
    only goes down, with early spikes of a few nats at most. Ten times that, plus 10 nats (for
    tiny vocabularies, where ln V is small), means the model gives the right character a
    probability below e^−(10 ln V + 10) = V^−10 · e^−10 on average: garbage weights, even where
    float32 saturates instead of overflowing to inf (CPUs differ there).
    """
    return 10.0 * math.log(max(vocab_size, 2)) + 10.0


def divergence(loss: float, vocab_size: int, what: str = "loss") -> str | None:
    """Why a loss says the run has diverged (non-finite, or far above ln V), or None if it is healthy."""
    if not math.isfinite(loss):
        return f"the {what} is not finite"
    limit = divergence_limit(vocab_size)
    if loss > limit:
        return (f"the {what} is {loss:.3g} nats per character, far above ln V = {math.log(vocab_size):.2f} "
                f"(what a model that knows nothing scores; limit {limit:.1f})")
    return None


def start_workers(trainer: Trainer, threads: int | None = None, world=None):
    """Make this process rank 0 of the run's workers and return their group.

    With N > 1 local workers this process coordinates: it forks N compute workers, reports,
    writes and keeps its own copy of the parameters in step, but computes no rows.

    Under mpiexec (``world``, an MPIGroup) the ranks are the workers: rank 0 sends the others
    the run (``blueprint``); each uses ``threads`` BLAS threads (default: cores ÷ ranks on this host).

    The count N is ``--workers`` (a resumed run: its recorded count), else one per core with at
    least 4 rows each, never more than the batch's rows. The N workers are forked from this
    process after the run is set up, so they start with the same corpus, model, optimizer and
    position; each runs ``Trainer.run`` on its rows with ``threads`` BLAS threads (default:
    cores ÷ workers) and ends with the loop. ``set_threads`` happens here, before the fork.
    """
    if world is not None:
        _set_rank_threads(world, threads)
        world.bcast(blueprint(trainer))
        trainer.use_group(world)
        return world
    n = max(1, min(trainer.opts.workers or default_workers(trainer.B), trainer.B))
    per_worker = threads or max(1, available_cores() // n)
    set_threads(per_worker)
    if n == 1:  # the trainer is already the one worker (SOLO)
        return SOLO

    def worker(group) -> int:
        after_fork(per_worker)
        trainer.use_group(group)
        trainer.run()
        return 0

    group = LocalGroup.start(n + 1, trainer.collective_bytes(), worker)
    trainer.use_group(group)
    return group


def join_world(bp: dict, world, threads: int | None = None) -> Trainer:
    """An MPI rank other than 0: its Trainer for rank 0's run, as a worker of ``world``."""
    trainer = follow(bp)
    _set_rank_threads(world, threads)
    trainer.use_group(world)
    return trainer


def _set_rank_threads(world, threads: int | None) -> None:
    """An MPI rank's BLAS threads: as given, else this host's cores shared by its ranks."""
    set_threads(threads or max(1, available_cores() // world.local_size))


def _num(x):
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def eval_rows(ids: np.ndarray, streams: int, chunk: int, whole: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets (S, n) for validation: ids cut into S ≤ streams equal rows (fewer when
    the text is short next to chunk), each row read from a zero state. ``whole`` (cloze models,
    whose targets are the inputs): rows of every character, x = y."""
    streams = max(1, min(streams, (len(ids) - 1) // max(1, chunk) or 1))
    if whole:
        rows = np.asarray(ids[: len(ids) // streams * streams]).reshape(streams, -1)
        return rows, rows
    per_row = (len(ids) - 1) // streams
    if streams > 1:
        return (ids[: per_row * streams].reshape(streams, per_row),
                ids[1 : per_row * streams + 1].reshape(streams, per_row))
    return ids[None, :-1], ids[None, 1:]


def sum_losses(model: CharLM, x: np.ndarray, y: np.ndarray, chunk: int,
               should_stop: Callable[[], bool] | None = None) -> tuple[float, int] | None:
    """(Σ −ln p(y | x), positions) over rows x, y (S, n), each row read from a zero state in chunks;
    None when ``should_stop`` says so. S may be 0 (a worker with no rows still asks ``should_stop``
    once per chunk, like the others)."""
    if model.cfg.direction == "bi":  # each row read whole by both stacks (one agreement, like one chunk)
        if should_stop is not None and should_stop():
            return None
        return (model.cloze_sum_loss(x) if x.shape[0] else 0.0), int(x.size)
    state = model.zero_state(x.shape[0]) if x.shape[0] else None
    total, n = 0.0, 0
    for s in range(0, x.shape[1], chunk):
        if should_stop is not None and should_stop():
            return None
        if state is None:
            continue
        xs, ys = np.asarray(x[:, s : s + chunk], np.int64), np.asarray(y[:, s : s + chunk], np.int64)
        loss, state = model.sum_loss(xs, ys, state)
        total += loss
        n += xs.size
    return total, n


def evaluate_ids(model: CharLM, ids: np.ndarray, streams: int = 1, chunk: int = 256,
                 should_stop: Callable[[], bool] | None = None) -> float:
    """Mean −ln p(x_t | x_<t) over ids split into ``streams`` rows, each from a zero state.

    With streams = 1 this is exactly the contract's eval: the whole text as one sequence. For a
    bidirectional model: −ln p(x_t | x_<t, x_>t) over every character, each stack in one pass.
    """
    x, y = eval_rows(ids, streams, chunk, whole=model.cfg.direction == "bi")
    sums = sum_losses(model, x, y, chunk, should_stop)
    return math.nan if sums is None else sums[0] / max(sums[1], 1)


# ---------------------------------------------------------------------- building runs


def new_trainer(corpus_path: Path | list[Path], out: Path, opts: TrainOptions, init_from: Path | None = None,
                on_bytes: Callable[[int], None] | None = None, glob: str = DEFAULT_GLOB) -> Trainer:
    """A new run in ``out`` (created and locked; removed again if setting up fails)."""
    opts.check()
    # what can be refused before the run directory is made: missing inputs, a model of impossible shape
    resolve_inputs([Path(p) for p in (corpus_path if isinstance(corpus_path, list) else [corpus_path])], glob)
    init = ckpt_io.load(init_from) if init_from is not None else None
    if init is None:
        ModelConfig(vocab_size=2, cell=opts.cell, layers=opts.layers, hidden=opts.hidden, embed=opts.embed,
                    dropout=opts.dropout, dtype=opts.dtype, direction=opts.direction)
    made = [d for d in (out, *out.parents) if not d.exists()]  # removed again if setting up fails
    lock = prepare_run_dir(out)
    try:
        vocab = Vocab(init.meta["vocab"]) if init is not None else None
        corpus = load_corpus(corpus_path, cache_dir=out, vocab=vocab, on_bytes=on_bytes, glob=glob,
                             vocab_what="corpus (for --init-from, the corpus must use the checkpoint's vocabulary)")
        if len(corpus.vocab) < 2:
            raise CorpusError(f"corpus {corpus.path} holds only one distinct character "
                              f"({visible(corpus.vocab.chars[0])}); there is nothing to learn")
        if init is not None:
            for k in ("cell", "layers", "hidden", "embed", "direction"):
                setattr(opts, k, getattr(init.config, k))
        cfg = ModelConfig(vocab_size=len(corpus.vocab), cell=opts.cell, layers=opts.layers, hidden=opts.hidden,
                          embed=opts.embed, dropout=opts.dropout, dtype=opts.dtype, direction=opts.direction)
        model = CharLM(cfg, seed=opts.seed)
        if init is not None:
            model.load_params({k: v.astype(cfg.np_dtype) for k, v in init.params.items()})
        return Trainer(out, opts, corpus, model=model, optimizer=make_optimizer(opts, model), lock=lock)
    except BaseException:
        lock.release()
        if made:
            remove_if_unused(out)
            for d in made[1:]:  # the parents this run made (runs/), when empty
                try:
                    d.rmdir()
                except OSError:
                    break
        raise


def make_optimizer(opts: TrainOptions, model: CharLM) -> Optimizer:
    """The run's optimizer; weight decay applies to weight matrices, not biases or peepholes."""
    mask = np.zeros_like(model.flat)
    off = 0
    for name, p in model.params.items():  # views of model.flat, in order
        if p.ndim == 2 and "peep" not in name:
            mask[off : off + p.size] = 1
        off += p.size
    return Optimizer(opts.optimizer, model.flat.size, model.cfg.np_dtype, weight_decay=opts.weight_decay,
                     decay_mask=mask)


def resume_trainer(run: Path, corpus: list[Path] | None, overrides: dict,
                   on_bytes: Callable[[int], None] | None = None, glob: str | None = None) -> Trainer:
    """Continue a run exactly: the run fixes model and data; stopping, cadences and lr may change."""
    if not run.is_dir() or not (run / "latest.npz").exists():
        raise ConfigError(f"--resume {run}: not a run directory (no latest.npz)")
    lock = RunLock(run).acquire()
    try:
        return _resume(run, corpus, overrides, lock, on_bytes, glob)
    except BaseException:
        lock.release()
        raise


def _resume(run: Path, corpus: list[Path] | None, overrides: dict, lock: RunLock,
            on_bytes: Callable[[int], None] | None, glob: str | None = None) -> Trainer:
    ck = ckpt_io.load(run / "latest.npz")
    opts = _recorded_options(ck.meta)
    fixed = set(MODEL_KEYS) | {"seq_len", "batch_size", "val_frac", "seed", "optimizer"}
    if any(overrides.get(k) is not None for k in BUDGETS):  # a budget given anew replaces the recorded one
        for k in BUDGETS:
            setattr(opts, k, None)
    for k, v in overrides.items():
        if v is None:
            continue
        if k in fixed and v != getattr(opts, k):
            raise ConfigError(f"--{k.replace('_', '-')} cannot change when resuming "
                              f"(the run uses {getattr(opts, k)})")
        setattr(opts, k, v)
    opts.check()
    corpus = read_run_corpus(ck.meta, corpus, glob, cache_dir=run, on_bytes=on_bytes)
    return _trainer_from(run, ck, opts, corpus, lock, where=run / "latest.npz")


def _recorded_options(meta: dict) -> TrainOptions:
    """The training options a checkpoint recorded (keys this version does not know are ignored)."""
    known = {f.name for f in fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in meta.get("train", {}).items() if k in known})


def _trainer_from(run: Path, ck: ckpt_io.Checkpoint, opts: TrainOptions, corpus: Corpus, lock: RunLock | None,
                  where: Path | str) -> Trainer:
    model = CharLM(ck.config, params=ck.params)
    opt = make_optimizer(opts, model)
    try:
        opt.load_state(ck.optim)
    except ConfigError as e:
        raise ckpt_io.CheckpointError(f"{where}: {e}") from e
    return Trainer(run, opts, corpus, model=model, optimizer=opt, meta_train=ck.meta.get("train", {}),
                   state=ck.state, lock=lock)


def read_run_corpus(meta: dict, given: list[Path] | None = None, glob: str | None = None,
                    cache_dir: Path | None = None, on_bytes: Callable[[int], None] | None = None) -> Corpus:
    """A run's corpus again: the inputs given now (their sha256 must match), else the recorded
    inputs with the recorded glob, refusing a file changed, added or removed (named)."""
    c = meta["corpus"]
    recorded = recorded_inputs(c)
    inputs = given or recorded
    other = given is not None and [p.resolve() for p in given] != [p.resolve() for p in recorded]

    def different() -> CorpusError:
        return CorpusError(f"{' '.join(shown(p) for p in given)} is not the corpus this run was trained on "
                           f"({corpus_label(c)}); resume without a corpus to read {shown(recorded[0])} again, or "
                           f"start a new run on it (--init-from to begin from this run's weights)")

    try:
        corpus = load_corpus(inputs, cache_dir=cache_dir, vocab=Vocab(meta["vocab"]),
                             expect_sha=None if other else c["sha256"], on_bytes=on_bytes,
                             glob=(glob if given else None) or c.get("glob", DEFAULT_GLOB),
                             expect_files=None if given else c.get("files") or None)
    except VocabError:
        if other:
            raise different() from None
        raise
    if other and corpus.sha256 != c["sha256"]:  # the same text under another name (a moved file) is fine
        raise different()
    return corpus


def suggested_lr(lr: float) -> float:
    """What to try after diverging at ``lr``: a quarter of it, but never above the default (a run that
    diverged far above the default is best restarted from it, not from 250,000)."""
    default = TrainOptions.lr
    return default if lr / 4 > default else lr / 4


def blueprint(trainer: Trainer) -> dict:
    """What an MPI rank needs to join rank 0's run: the run as a checkpoint (sent, never written)."""
    ck = trainer.checkpoint(trainer.full_state())
    return {"run_dir": str(trainer.run_dir), "params": dict(ck.params), "meta": ck.meta, "optim": ck.optim,
            "state": ck.state}


def follow(bp: dict) -> Trainer:
    """An MPI rank other than 0: the same run as rank 0's, from its blueprint. It reads the corpus
    from the same path on its own host (which must hold the same file) and writes nothing."""
    ck = ckpt_io.Checkpoint(params=bp["params"], meta=bp["meta"], optim=bp["optim"], state=bp["state"])
    corpus = read_run_corpus(ck.meta)
    return _trainer_from(Path(bp["run_dir"]), ck, _recorded_options(ck.meta), corpus, None, where="rank 0's run")
