"""Optimizers over one flat parameter vector, global-norm clipping, learning-rate schedules.

The update rules are those of ``torch.optim`` with default hyper-parameters (Adam, AdamW,
SGD with momentum, RMSprop, Adagrad), so a run can be checked step for step against
PyTorch. Optimizer state is a dict of arrays (it goes into the checkpoint); the scratch
buffers that make a step allocation-free are not part of it.
"""

from __future__ import annotations

import math

import numpy as np

from lstmgen.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "cosine", "step")

# The state arrays each optimizer keeps, all of the parameter vector's length, plus "t".
_STATE_KEYS = {
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
    "sgd": ("momentum_buffer",),
    "rmsprop": ("square_avg",),
    "adagrad": ("sum",),
}


class Optimizer:
    """One of ``OPTIMIZERS`` stepping a flat parameter vector in place.

    weight_decay: AdamW decays decoupled (p ← p − lr·wd·p); the others add wd·p to the
    gradient (L2), as torch.optim does. ``decay_mask`` (same length, 0/1) limits decay to
    some entries (lstmgen decays matrices, not biases); None decays all.
    """

    def __init__(self, name: str, size: int, dtype, *, weight_decay: float = 0.0,
                 decay_mask: np.ndarray | None = None, betas=(0.9, 0.999), eps: float | None = None,
                 momentum: float = 0.9, alpha: float = 0.99):
        if name not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
        if weight_decay < 0:
            raise ConfigError(f"weight decay must be ≥ 0, got {weight_decay}")
        self.name = name
        self.weight_decay = float(weight_decay)
        self.decay_mask = decay_mask
        self.betas, self.momentum, self.alpha = betas, momentum, alpha
        self.eps = eps if eps is not None else (1e-10 if name == "adagrad" else 1e-8)
        self.state: dict[str, np.ndarray] = {k: np.zeros(size, dtype=dtype) for k in _STATE_KEYS[name]}
        self.state["t"] = np.zeros((), dtype=np.int64)
        self._tmp = np.empty(size, dtype=dtype)
        self._tmp2 = np.empty(size, dtype=dtype)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for k, v in self.state.items():
            if k not in state or np.shape(state[k]) != v.shape:
                raise ConfigError(f"optimizer state {k!r} is missing or mis-shaped")
            v[...] = state[k]

    def _decay_term(self, p: np.ndarray) -> np.ndarray:
        tmp2 = np.multiply(p, self.weight_decay, out=self._tmp2)
        if self.decay_mask is not None:
            tmp2 *= self.decay_mask
        return tmp2

    def step(self, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        """One update of p (flat) from gradient g (flat; may be modified)."""
        s, tmp = self.state, self._tmp
        s["t"] += 1
        t = int(s["t"])
        if self.weight_decay and self.name != "adamw":
            g += self._decay_term(p)
        if self.name in ("adam", "adamw"):
            if self.weight_decay and self.name == "adamw":
                decay = self._decay_term(p)  # decoupled: p ← p − lr·wd·p
                decay *= lr
                p -= decay
            b1, b2 = self.betas
            m, v = s["exp_avg"], s["exp_avg_sq"]
            m *= b1
            np.multiply(g, 1.0 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - b2
            v += tmp
            bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
            np.sqrt(v, out=tmp)  # denom = √v / √bc2 + eps
            tmp *= 1.0 / math.sqrt(bc2)
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= lr / bc1
            p -= tmp
        elif self.name == "sgd":
            buf = s["momentum_buffer"]
            if t == 1:
                buf[...] = g
            else:
                buf *= self.momentum
                buf += g
            np.multiply(buf, lr, out=tmp)
            p -= tmp
        elif self.name == "rmsprop":
            sq = s["square_avg"]
            sq *= self.alpha
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - self.alpha
            sq += tmp
            np.sqrt(sq, out=tmp)
            tmp += self.eps
            np.divide(g, tmp, out=tmp)
            tmp *= lr
            p -= tmp
        else:  # adagrad
            acc = s["sum"]
            np.multiply(g, g, out=tmp)
            acc += tmp
            np.sqrt(acc, out=tmp)
            tmp += self.eps
            np.divide(g, tmp, out=tmp)
            tmp *= lr
            p -= tmp


def global_norm(g: np.ndarray) -> float:
    """‖g‖₂ of the flat gradient, accumulated in float64."""
    return math.sqrt(float(np.dot(g, g)))


def clip_grad_norm_(g: np.ndarray, max_norm: float) -> float:
    """Scale g in place so that its global norm is at most max_norm (0 = no clipping).

    Same rule as torch.nn.utils.clip_grad_norm_. Returns the norm before clipping.
    """
    norm = global_norm(g)
    if max_norm > 0:
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            g *= coef
    return norm


def lr_at(step: int, base_lr: float, schedule: str = "constant", *, total_steps: int | None = None,
          warmup: int = 0, min_frac: float = 0.1, step_size: int = 1000, gamma: float = 0.5,
          progress: float | None = None) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    constant  base_lr (after warm-up)
    cosine    linear warm-up over ``warmup`` steps, then cosine decay from base_lr to
              min_frac·base_lr at ``total_steps`` (held there afterwards); ``progress`` in
              [0, 1], when given, is how far another budget (time) has run: the decay follows
              whichever budget is further along
    step      base_lr · gamma^(step // step_size)
    Any schedule ramps up linearly over the first ``warmup`` steps.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if warmup > 0 and step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * gamma ** (step // max(1, step_size))
    done = 0.0 if progress is None else progress
    if total_steps and total_steps > warmup:
        done = max(done, (step - warmup) / (total_steps - warmup))
    done = min(1.0, max(0.0, done))
    return base_lr * (min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * done)))
