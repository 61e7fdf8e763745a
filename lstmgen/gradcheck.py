"""Backpropagation through time checked against central differences, tensor by tensor.

The objective is L = mean cross-entropy + Σ ⟨w, final state⟩ with a fixed random w, so that the
gradient path through the carried state is checked too, and the initial state is checked
like a parameter. Everything runs in float64. For each tensor, every element is perturbed
(or, for large tensors, a random sample of elements), and the worst element is reported:

    numeric = (L(θ + ε) − L(θ − ε)) / 2ε,   rel = |analytic − numeric| / max(|analytic|, |numeric|, 1e-3)

(the floor keeps float64 round-off in L, up to about 1e-9 absolute in the numeric gradient,
from reading as an error on gradients near zero). A tensor passes when rel < 1e-5 at every checked element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstmgen.model import CharLM

EPS = 1e-6
FLOOR = 1e-3
TOLERANCE = 1e-5


@dataclass
class TensorCheck:
    name: str
    shape: tuple[int, ...]
    checked: int  # elements perturbed
    max_rel_error: float
    worst: tuple[int, ...]  # index of the worst element
    analytic: float  # at the worst element
    numeric: float

    @property
    def ok(self) -> bool:
        return self.max_rel_error < TOLERANCE

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "checked": self.checked,
                "max_rel_error": self.max_rel_error, "worst": list(self.worst), "analytic": self.analytic,
                "numeric": self.numeric, "ok": self.ok}


def problem(model: CharLM, batch: int, seq_len: int, rng: np.random.Generator):
    """Random ids x, y (B, T), a random initial state, and the weights w of the final-state term."""
    V = model.cfg.vocab_size
    x, y = rng.integers(0, V, (batch, seq_len)), rng.integers(0, V, (batch, seq_len))
    state = [tuple(rng.normal(0, 0.5, a.shape) for a in layer) for layer in model.zero_state(batch)]
    w_final = [tuple(rng.normal(0, 1, a.shape) for a in layer) for layer in state]
    return x, y, state, w_final


def check(model: CharLM, x: np.ndarray, y: np.ndarray, state, w_final, samples: int | None = None,
          rng: np.random.Generator | None = None) -> list[TensorCheck]:
    """Every parameter tensor and every part of the initial state, analytic against numeric.

    ``samples``: at most this many elements per tensor (chosen at random); None checks all.
    """
    rng = rng or np.random.default_rng(0)
    x, y = model.network.exact_batch(x, y)  # what the loss reads: nothing else, so nothing unchecked
    _, grads, _, dstate0 = model.loss_and_grads(x, y, state, dstate=w_final)

    def objective() -> float:
        loss, _, final, _ = model.loss_and_grads(x, y, state)
        return loss + sum(float(np.sum(w * s)) for ws, ss in zip(w_final, final) for w, s in zip(ws, ss))

    targets = [(name, p, grads[name]) for name, p in model.params.items()]
    for k, (layer, parts) in enumerate(zip(state, model.network.state_layout())):  # named as checkpoints name them
        for j, (s, (part, _)) in enumerate(zip(layer, parts)):
            targets.append((f"initial state l{k}.{part}", s, dstate0[k][j]))
    results = []
    for name, p, g in targets:
        flat_idx = np.arange(p.size)
        if samples is not None and p.size > samples:
            flat_idx = np.sort(rng.choice(p.size, samples, replace=False))
        worst = (-1.0, 0, 0.0, 0.0)
        for i in flat_idx:
            idx = np.unravel_index(i, p.shape)
            old = p[idx]
            p[idx] = old + EPS
            fp = objective()
            p[idx] = old - EPS
            fm = objective()
            p[idx] = old
            num, ana = (fp - fm) / (2 * EPS), float(g[idx])
            rel = abs(ana - num) / max(abs(ana), abs(num), FLOOR)
            if rel > worst[0]:
                worst = (rel, i, ana, num)
        rel, i, ana, num = worst
        results.append(TensorCheck(name, tuple(p.shape), len(flat_idx), max(rel, 0.0),
                                   tuple(int(v) for v in np.unravel_index(i, p.shape)), ana, num))
    return results
