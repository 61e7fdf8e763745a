"""The training options (``TrainOptions``): every option with the default a user who passes only a
file gets, which of them a run fixes for its life, and their checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lstmgen.errors import ConfigError

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
    direction: str = "fwd"  # "bi": a bidirectional cloze model (lstmgen.networks.cloze)
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
    # characters of the held-out tail each validation reads (evenly spaced spans, the same every time);
    # 0: the whole tail. Bounded so that a large corpus trains rather than validates (benchmarks/RESULTS.md)
    val_chars: int = 200_000
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
        if self.val_chars is None or self.val_chars < 0:
            raise ConfigError(f"--val-chars must be ≥ 0 (0: the whole held-out tail), got {self.val_chars}")
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


def suggested_lr(lr: float) -> float:
    """What to try after diverging at ``lr``: a quarter of it, but never above the default (a run that
    diverged far above the default is best restarted from it, not from 250,000)."""
    default = TrainOptions.lr
    return default if lr / 4 > default else lr / 4
