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
from lstmgen.corpus import Corpus, load_corpus
from lstmgen.errors import ConfigError, CorpusError, DivergenceError, LstmgenError
from lstmgen.model import CharLM, ModelConfig
from lstmgen.optim import Optimizer, clip_grad_norm_, lr_at
from lstmgen.rundir import RunLock, prepare_run_dir, remove_if_unused
from lstmgen.text import BatchStream, Vocab, fit_batch, split, visible

# options that define the model and its data: fixed for the life of a run
MODEL_KEYS = ("cell", "layers", "hidden", "embed", "dropout", "dtype")


@dataclass
class TrainOptions:
    """Every training option, with the defaults a user who passes only a file gets."""

    # Model and optimisation defaults: the best learning per minute found on a 2-core machine
    # (benchmarks/RESULTS.md: 4-minute probes on tinyshakespeare, then 10 minutes against
    # PyTorch; one 384-unit layer beat 2×256, 2×384 and 1×512, B32 beat B64, lr 4e-3 beat 2e-3/3e-3).
    cell: str = "lstm"
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
        for name in ("max_steps", "epochs", "patience", "sample_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"--max-time must be positive, got {self.max_time}")


@dataclass
class Progress:
    """What the loop reports to its callback after every step and evaluation."""

    step: int
    epoch: int
    batch: int
    batches_per_epoch: int
    total_steps: int | None
    train_loss: float
    val_loss: float | None
    best_val_loss: float | None
    lr: float
    chars_per_sec: float
    elapsed_s: float
    event: str = "step"  # "step", "eval", "sample"
    extra: dict = field(default_factory=dict)


@dataclass
class Summary:
    run_dir: Path
    step: int
    epoch: int
    best_val_loss: float | None
    last_val_loss: float | None
    stop_reason: str


class Trainer:
    """Holds one run: corpus, model, optimizer, data position, carried state, RNG."""

    def __init__(self, run_dir: Path, opts: TrainOptions, corpus: Corpus, *, model: CharLM, optimizer: Optimizer,
                 meta_train: dict | None = None, state=None, lock: RunLock | None = None):
        self.run_dir, self.opts, self.lock = run_dir, opts, lock
        self.corpus_path, self.vocab, self.model, self.opt = corpus.path, corpus.vocab, model, optimizer
        self.corpus_sha, self.n_chars = corpus.sha256, corpus.n_chars
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
        self.rng = np.random.default_rng(opts.seed)
        if "rng" in mt:
            self.rng.bit_generator.state = mt["rng"]
        self.state = state if state is not None and self.batch > 0 else model.zero_state(B)
        if state is not None and state[0][0].shape[1] != B:
            self.state = model.zero_state(B)
        self.stop_request: str | None = None  # set from a signal handler

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
        """Mean loss over the whole held-out tail, in parallel streams from a fresh state."""
        if len(self.val_ids) < 2:
            return None
        return evaluate_ids(self.model, self.val_ids, streams=self.B, chunk=self.T,
                            should_stop=lambda: self.stop_request is not None)

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
                "bad_evals": self.bad_evals, "rng": self.rng.bit_generator.state,
                "schedule_progress": self.time_progress() or self.progress0,
            },
            "corpus": {"name": self.corpus_path.name, "path": str(self.corpus_path.resolve()),
                       "sha256": self.corpus_sha, "chars": self.n_chars},
        }

    def checkpoint(self) -> ckpt_io.Checkpoint:
        return ckpt_io.Checkpoint(
            params=self.model.params, meta=self.meta(),
            optim=dict(self.opt.state),
            state=self.state,
        )

    def _diverged(self, when: str, why: str) -> DivergenceError:
        return DivergenceError(f"training diverged {when}: {why}; "
                               f"try a lower learning rate (--lr {self.opts.lr / 4:g})")

    def save(self, name: str) -> Path:
        path = self.run_dir / name
        ckpt_io.save(path, self.checkpoint())
        return path

    def log(self, record: dict) -> None:
        path = self.run_dir / "metrics.jsonl"
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise LstmgenError(f"cannot write {path}: {e.strerror or e}") from e

    # ------------------------------------------------------------------ the loop
    def run(self, on_progress: Callable[[Progress], None] | None = None) -> Summary:
        opts = self.opts
        on_progress = on_progress or (lambda p: None)
        t_start = self.t_start = time.monotonic()
        chars, loss_sum, loss_n = 0, 0.0, 0
        last_eval_step = None
        stop = None
        log_every = max(1, min(opts.eval_every, 10))
        while True:
            # stop check
            if self.stop_request:
                stop = self.stop_request
            elif opts.max_steps and self.step >= opts.max_steps:
                stop = "max-steps"
            elif opts.epochs and self.epoch >= opts.epochs:
                stop = "epochs"
            elif opts.max_time and time.monotonic() - t_start >= opts.max_time:
                stop = "max-time"
            elif opts.patience and self.bad_evals >= opts.patience:
                stop = "patience"
            if stop:
                break
            lr = self.lr()
            if self.batch == 0:  # a new epoch starts from a zero state
                self.state = self.model.zero_state(self.B)
            x, y = self.stream.get(self.batch)
            rng = self.rng if self.model.cfg.dropout > 0 else None
            loss, _, new_state, _ = self.model.loss_and_grads(x, y, self.state, rng=rng, grads=self.grads)
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
            loss_sum, loss_n = loss_sum + loss, loss_n + 1
            now = time.monotonic()
            cps = chars / max(now - t_start, 1e-9)
            prog = Progress(self.step, self.epoch, self.batch, self.stream.batches_per_epoch,
                            self.total_steps, loss, self.last_val, self.best_val, lr, cps, now - t_start)
            if self.step % opts.eval_every == 0:
                self._eval_and_save(prog, loss_sum / loss_n)
                last_eval_step = self.step
                loss_sum, loss_n = 0.0, 0
                if self.stop_request:
                    continue
            elif self.step % log_every == 0:
                self.log(self._record(prog, loss_sum / loss_n, None))
            if opts.sample_every and self.step % opts.sample_every == 0:
                prog.event = "sample"
            on_progress(prog)
        # the end: evaluate (unless just done or interrupted), save latest
        if last_eval_step != self.step and not self.stop_request and self.step > 0:
            now = time.monotonic()
            prog = Progress(self.step, self.epoch, self.batch, self.stream.batches_per_epoch,
                            self.total_steps, loss_sum / max(loss_n, 1), self.last_val, self.best_val,
                            self.lr(), chars / max(now - t_start, 1e-9), now - t_start)
            self._eval_and_save(prog, loss_sum / loss_n if loss_n else math.nan)
            on_progress(prog)
        else:
            self.save("latest.npz")
        return Summary(self.run_dir, self.step, self.epoch, self.best_val, self.last_val, stop or "done")

    def _record(self, prog: Progress, train_loss: float, val_loss: float | None) -> dict:
        return {"step": prog.step, "epoch": prog.epoch, "train_loss": _num(train_loss),
                "val_loss": _num(val_loss), "lr": prog.lr, "chars_per_sec": round(prog.chars_per_sec, 1),
                "elapsed_s": round(prog.elapsed_s, 3)}

    def _eval_and_save(self, prog: Progress, train_loss: float) -> None:
        val = self.evaluate()
        if self.stop_request:  # interrupted mid-validation: keep the training state, save latest
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
        self.log(self._record(prog, train_loss, val))
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


def _num(x):
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def eval_rows(ids: np.ndarray, streams: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets (S, n) for validation: ids cut into S ≤ streams equal rows (fewer when
    the text is short next to chunk), each row read from a zero state."""
    streams = max(1, min(streams, (len(ids) - 1) // max(1, chunk) or 1))
    per_row = (len(ids) - 1) // streams
    if streams > 1:
        return (ids[: per_row * streams].reshape(streams, per_row),
                ids[1 : per_row * streams + 1].reshape(streams, per_row))
    return ids[None, :-1], ids[None, 1:]


def evaluate_ids(model: CharLM, ids: np.ndarray, streams: int = 1, chunk: int = 256,
                 should_stop: Callable[[], bool] | None = None) -> float:
    """Mean −ln p(x_t | x_<t) over ids split into ``streams`` rows, each from a zero state.

    With streams = 1 this is exactly the contract's eval: the whole text as one sequence.
    """
    x, y = eval_rows(ids, streams, chunk)
    state = model.zero_state(x.shape[0])
    total, n = 0.0, 0
    for s in range(0, x.shape[1], chunk):
        if should_stop is not None and should_stop():
            return math.nan
        xs, ys = np.asarray(x[:, s : s + chunk], np.int64), np.asarray(y[:, s : s + chunk], np.int64)
        loss, state = model.sum_loss(xs, ys, state)
        total += loss
        n += xs.size
    return total / max(n, 1)


# ---------------------------------------------------------------------- building runs


def new_trainer(corpus_path: Path, out: Path, opts: TrainOptions, init_from: Path | None = None,
                on_bytes: Callable[[int], None] | None = None) -> Trainer:
    """A new run in ``out`` (created and locked; removed again if setting up fails)."""
    opts.check()
    init = ckpt_io.load(init_from) if init_from is not None else None
    created = not out.exists()
    lock = prepare_run_dir(out)
    try:
        vocab = Vocab(init.meta["vocab"]) if init is not None else None
        corpus = load_corpus(corpus_path, cache_dir=out, vocab=vocab, on_bytes=on_bytes,
                             vocab_what="corpus (for --init-from, the corpus must use the checkpoint's vocabulary)")
        if len(corpus.vocab) < 2:
            raise CorpusError(f"corpus {corpus_path} holds only one distinct character "
                              f"({visible(corpus.vocab.chars[0])}); there is nothing to learn")
        if init is not None:
            for k in ("cell", "layers", "hidden", "embed"):
                setattr(opts, k, getattr(init.config, k))
        cfg = ModelConfig(vocab_size=len(corpus.vocab), cell=opts.cell, layers=opts.layers, hidden=opts.hidden,
                          embed=opts.embed, dropout=opts.dropout, dtype=opts.dtype)
        model = CharLM(cfg, seed=opts.seed)
        if init is not None:
            model.load_params({k: v.astype(cfg.np_dtype) for k, v in init.params.items()})
        return Trainer(out, opts, corpus, model=model, optimizer=make_optimizer(opts, model), lock=lock)
    except BaseException:
        lock.release()
        if created:
            remove_if_unused(out)
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


def resume_trainer(run: Path, corpus: Path | None, overrides: dict,
                   on_bytes: Callable[[int], None] | None = None) -> Trainer:
    """Continue a run exactly: the run fixes model and data; stopping, cadences and lr may change."""
    if not run.is_dir() or not (run / "latest.npz").exists():
        raise ConfigError(f"--resume {run}: not a run directory (no latest.npz)")
    lock = RunLock(run).acquire()
    try:
        return _resume(run, corpus, overrides, lock, on_bytes)
    except BaseException:
        lock.release()
        raise


def _resume(run: Path, corpus: Path | None, overrides: dict, lock: RunLock,
            on_bytes: Callable[[int], None] | None) -> Trainer:
    ck = ckpt_io.load(run / "latest.npz")
    mt = ck.meta.get("train", {})
    known = {f.name for f in fields(TrainOptions)}
    opts = TrainOptions(**{k: v for k, v in mt.items() if k in known})
    fixed = set(MODEL_KEYS) | {"seq_len", "batch_size", "val_frac", "seed", "optimizer"}
    for k, v in overrides.items():
        if v is None:
            continue
        if k in fixed and v != getattr(opts, k):
            raise ConfigError(f"--{k.replace('_', '-')} cannot change when resuming "
                              f"(the run uses {getattr(opts, k)})")
        setattr(opts, k, v)
    opts.check()
    corpus = load_corpus(corpus or Path(ck.meta["corpus"]["path"]), cache_dir=run, vocab=Vocab(ck.meta["vocab"]),
                         expect_sha=ck.meta["corpus"]["sha256"], on_bytes=on_bytes)
    cfg = ck.config
    model = CharLM(cfg, params=ck.params)
    opt = make_optimizer(opts, model)
    try:
        opt.load_state(ck.optim)
    except ConfigError as e:
        raise ckpt_io.CheckpointError(f"{run / 'latest.npz'}: {e}") from e
    return Trainer(run, opts, corpus, model=model, optimizer=opt, meta_train=mt, state=ck.state, lock=lock)
