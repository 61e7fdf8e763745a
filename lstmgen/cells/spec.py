"""``CellSpec``: everything lstmgen knows about one cell, in one table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CellSpec:
    """One cell's facts. The layer stack reads the shapes, the initialisation and the sequence passes;
    the stepper reads ``step``; probe, view and the explorer read the quantities, gate blocks and the
    keep gate; gradcheck and checkpoints read the state parts."""

    name: str
    gates: int  # G: gate blocks stacked in W_ih / W_hh
    states: tuple[str, ...]  # the carried state's parts: ("h", "c") or ("h",)
    quantities: tuple[str, ...]  # what ``trace`` reports (and inspect shows), in order
    gate_blocks: str  # the gate blocks of W_ih / W_hh in order, one letter each (inspect's --params)
    keep_gate: str | None  # the gate that keeps the state when near 1 (an "integrator" unit's), or None
    sigmoid: str  # the quantities whose values lie in (0, 1) (gates: saturation is measured on them)
    forward: Callable  # (xp (T, G·H, B), which it may overwrite; state, rec) → (hbuf (H, T+1, B), final state, cache)
    backward: Callable  # (dhs (H, T, B), dstate, cache) → (dxp (G·H, T·B), dstate0, {rec key: gradient})
    step: Callable  # the stepper's one step in place: (a, ah, h, c, rec, scratch)
    trace: Callable  # cache → {quantity: (T, H, B)}
    init_bias: Callable | None = None  # (b_ih, b_hh, H) → None: the forget-gate bias, after PyTorch's init
    fused_step: bool = True  # the stepper computes W_ih x + W_hh h + b as one GEMM of [W_ih | W_hh] on [x; h]
    # rec key → parameter name rnn.{name}_l{k}: what ``forward`` reads besides the input projection
    recurrent: dict[str, str] = field(default_factory=lambda: {"w_hh": "weight_hh"})
    extra: dict[str, str] = field(default_factory=dict)  # parameters beyond PyTorch's: name → its rows (H columns)
    bias_kept: int = 0  # trailing gate blocks whose b_hh stays inside the cell (GRU's n block, gated by r)

    @property
    def n_states(self) -> int:
        return len(self.states)
