"""Recurrent cells: pure forward and backward passes over a whole sequence, one module per cell.

Notation (the same letters everywhere in lstmgen):
    B batch, T time, H hidden units, G gate blocks (lstm 4, gru 3, cifg 3, rnn 1).

Layout. The math runs *feature-major*: a state is (H, B), a gate pre-activation (G·H, B),
so a gate block ``a[k*H:(k+1)*H]`` is contiguous memory and the recurrent product is
``W_hh @ h`` with ``W_hh`` exactly in PyTorch's (G·H, H) layout. Whole sequences are
(F, T, B): their (F, T·B) reshape is what one GEMM over all time steps needs (outputs, input
gradients, weight gradients). What the time loop reads or writes once a step is *time-major*,
(T, F, B), so that each step is one contiguous block (a (F, t, B) slice is F rows of B floats
a whole row apart: several times slower to add from or copy into, measured).

Every forward takes
    xp     (T, G·H, B)  input projections W_ih x_t + biases, computed by the caller for all t;
                        the forward may overwrite it (lstm, peephole, cifg and rnn make it their
                        gates' or pre-activations' buffer)
    state  tuple of (H, B) arrays: (h, c) for lstm/peephole/cifg, (h,) for gru/rnn
    rec    dict of recurrent parameters: ``w_hh`` (G·H, H), plus ``b_hh`` (gru) or ``peep`` (peephole)
and returns ``hbuf`` (H, T+1, B) with ``hbuf[:, 0]`` = h_0 and ``hbuf[:, t+1]`` = h_t (so
outputs and previous states are both (H, T·B) views), the final state, and a cache.
Every backward takes
    dhs    (H, T, B)    loss gradient w.r.t. each output h_t (from the layer above)
    dstate tuple like state: gradient w.r.t. the final state (zeros for truncated BPTT)
and returns ``dxp`` (G·H, T·B), the gradient w.r.t. the initial state, and a dict of
gradients for ``rec``. The time loop computes only per-step gate gradients; weight
gradients are single GEMMs over all T·B columns afterwards (one bulk ``feature_major`` copy of
the per-step gradients first). Per-step work runs on contiguous (·, B) scratch and caches.

Nonlinearities use one ``exp`` over all gate blocks: tanh(a) = 2σ(2a) − 1.

Each cell module ends with its ``SPEC`` (``spec.CellSpec``); ``CELLS`` below is the registry.
A new cell is a new module here and one line in ``CELLS``.
"""

from __future__ import annotations

from lstmgen.cells import cifg, gru, lstm, peephole, rnn
from lstmgen.cells.ops import flat
from lstmgen.cells.spec import CellSpec

CELLS: dict[str, CellSpec] = {spec.name: spec for spec in (lstm.SPEC, peephole.SPEC, cifg.SPEC, gru.SPEC, rnn.SPEC)}

__all__ = ["CELLS", "CellSpec", "flat"]
