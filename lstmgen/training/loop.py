"""The training loop (``Trainer``): one run's model, optimizer, data position and carried state. No
printing: progress goes to a callback.

Each step reads top to bottom: stop check → learning rate for this step → batch (state reset at
the start of every epoch) → forward/backward → finite check → clip → optimizer step →
periodic validation, metrics and checkpoints.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lstmgen import checkpoint as ckpt_io
from lstmgen.corpus import Corpus
from lstmgen.dropout import SCHEME as DROPOUT_SCHEME
from lstmgen.dropout import RowStreams
from lstmgen.errors import DivergenceError, LstmgenError
from lstmgen.model import CharLM
from lstmgen.optim import Optimizer, clip_grad_norm_, lr_at
from lstmgen.parallel import SOLO
from lstmgen.rundir import RunLock
from lstmgen.runs import read_metrics
from lstmgen.text import BatchStream, fit_batch, split
from lstmgen.training.collectives import STOPS, agree, gather_state, sum_gradients
from lstmgen.training.evaluation import divergence, validation_rows
from lstmgen.training.options import MODEL_KEYS, TrainOptions, suggested_lr
from lstmgen.version import __version__


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
        if self.step and model.cfg.dropout > 0 and mt.get("dropout_masks", "philox-per-row") != DROPOUT_SCHEME:
            self.warnings.append(f"this run's dropout masks up to step {self.step} were drawn by another lstmgen "
                                 "version; from here on they follow this version's: the same dropout rate, other "
                                 "masks, so the run does not continue bit for bit as that version would have")
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
    @functools.cached_property
    def val_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out rows every validation reads (``--val-chars`` of the tail; 0: all of it)."""
        return validation_rows(self.model.network, self.val_ids, self.B, self.T, self.opts.val_chars)

    def evaluate(self) -> float | None:
        """Mean loss over the validation rows (``val_rows``), in parallel streams from a fresh state
        (with workers: each worker its block of the streams, the sums added up)."""
        if len(self.val_ids) < 2:
            return None
        x, y = self.val_rows
        block = self.group.rows(x.shape[0])
        sums = self.model.sum_losses(x[block], y[block], chunk=self.T, should_stop=self._interrupted)
        if sums is None:
            return math.nan
        totals = np.array(sums, dtype=np.float64)  # (Σ −ln p, positions)
        self.group.allreduce_(totals)
        return float(totals[0] / max(totals[1], 1.0))

    # ------------------------------------------------------------------ agreement between workers (collectives)
    def _agree(self, local_stop: str | None, lr: float) -> tuple[str | None, float]:
        """Every worker's stop request (any one stops all) and rank 0's learning rate, the same everywhere."""
        stop, lr = agree(self.group, local_stop, lr)
        if stop in STOPS[:2]:  # SIGINT, SIGTERM
            self.stopping = stop
        return stop, lr

    def _interrupted(self) -> bool:
        """Whether any worker was asked to stop (agreed: every worker answers the same)."""
        self._agree(self.stop_request if self.stop_request in STOPS[:2] else None, 0.0)
        return self.stopping is not None

    def full_state(self) -> list[tuple[np.ndarray, ...]]:
        """The carried state of all B rows (with workers: gathered from each worker's rows)."""
        if self.group.size == 1:  # (also while the trainer is set up, before it has rows)
            return self.state
        return gather_state(self.group, self.state, self.rows, self.B, self.model.flat.dtype)

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
                "bad_evals": self.bad_evals, "dropout_masks": DROPOUT_SCHEME, "workers": self.group.workers,
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
        on_progress = on_progress or (lambda p: None)
        self.t_start = time.monotonic()
        self._chars, first_step = 0, self.step
        span = Span(self.logged_line())  # the steps since metrics.jsonl's last line
        last_eval_step = None
        log_every = max(1, min(self.opts.eval_every, 10))
        while True:
            stop, lr = self._agree(self._stop_reason(), self.lr())  # agreed by every worker
            if stop:
                break
            loss, norm = self._step(lr)
            span.add(loss, norm, 0 < self.opts.grad_clip < norm)
            logs = self.step % self.opts.eval_every == 0 or self.step % log_every == 0
            line = span.close() if logs else span.shown()
            prog = self._progress(line, lr)  # the bar shows what is logged
            if self.step % self.opts.eval_every == 0:
                self._eval_and_save(prog, line)
                last_eval_step = self.step
                if self.stopping:
                    continue
            elif logs:
                self.log(self._record(prog, line, None))
            if self.opts.sample_every and self.step % self.opts.sample_every == 0:
                prog.event = "sample"
            on_progress(prog)
        # the end: evaluate (unless just done or interrupted), save latest
        spent = self.step == first_step > 0  # a resume whose budget was already spent: the run stays as it was
        if not spent and last_eval_step != self.step and not self.stopping and self.step > 0:
            line = span.close()  # no step since the last line: its values again
            prog = self._progress(line, self.lr())
            self._eval_and_save(prog, line)
            on_progress(prog)
        elif not spent:
            self.save("latest.npz")
        return Summary(self.run_dir, self.step, self.epoch, self.best_val, self.last_val, stop or "done")

    def _stop_reason(self) -> str | None:
        """Why this worker would stop before the next step (its own view; ``_agree`` makes it everyone's)."""
        opts = self.opts
        if self.stopping or self.stop_request:
            return self.stopping or self.stop_request
        if opts.max_steps and self.step >= opts.max_steps:
            return "max-steps"
        if opts.epochs and self.epoch >= opts.epochs:
            return "epochs"
        if opts.max_time and time.monotonic() - self.t_start >= opts.max_time:
            return "max-time"
        if opts.patience and self.bad_evals >= opts.patience:
            return "patience"
        return None

    def _step(self, lr: float) -> tuple[float, float]:
        """One optimizer step on the next batch (this worker's rows of it); returns the batch's mean loss
        and the global gradient norm before clipping, the same on every worker."""
        if self.batch == 0:  # a new epoch starts from a zero state
            self.state = self.model.zero_state(self.rows.stop - self.rows.start)
        masks = self.masks.at(self.step) if self.model.cfg.dropout > 0 else None
        if self.rows.stop > self.rows.start:
            x, y = self.model.network.train_batch(self.stream, self.batch, self.T)  # (B, ·) each
            loss, _, new_state, _ = self.model.loss_and_grads(x[self.rows], y[self.rows], self.state,
                                                              rng=masks, grads=self.grads)
        else:  # a coordinator with no rows adds nothing to the sums
            loss, new_state = 0.0, self.state
            self.flat_g.fill(0.0)
        share = (self.rows.stop - self.rows.start) / self.B
        loss = sum_gradients(self.group, self.flat_g, loss, share)  # every worker: the whole batch's gradient
        why = divergence(loss, len(self.vocab), "training loss")
        norm = clip_grad_norm_(self.flat_g, self.opts.grad_clip) if why is None else math.nan
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
        self._chars += self.B * self.T
        return loss, norm

    def _progress(self, line: dict, lr: float) -> Progress:
        elapsed = time.monotonic() - self.t_start
        return Progress(self.step, self.epoch, self.batch, self.stream.batches_per_epoch, self.total_steps,
                        line["train_loss"], self.last_val, self.best_val, lr, self._chars / max(elapsed, 1e-9),
                        elapsed, grad_norm=line["grad_norm"], clipped=line["clipped"])

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


def _num(x):
    return None if x is None or not math.isfinite(x) else round(float(x), 6)
