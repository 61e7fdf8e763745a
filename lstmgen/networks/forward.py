"""The left-to-right character language model: embedding → L stacked cells → dropout → decoder → softmax.

    p(x_{t+1} | x_≤t) = softmax(W_dec · drop(h^{L−1}_t) + b_dec)

Notation: B batch, T time, H hidden, V vocabulary, L layers, G gate blocks.
"""

from __future__ import annotations

import numpy as np

from lstmgen.networks.base import Network, Traced
from lstmgen.networks.layers import stack_backward, stack_forward
from lstmgen.networks.losses import softmax, softmax_xent_, sum_logprob
from lstmgen.networks.stepper import Stepper


class ForwardLM(Network):
    """Each character predicted from the ones before it. ``forward``/``backward`` are the passes the
    Jordan network overrides; everything else here reads them."""

    def forward(self, params, x: np.ndarray, state, rng=None):
        """Forward over a batch of sequences.

        x      (B, T) int character ids
        state  per layer, tuple of (rows, B) arrays (see ``zero_state``)
        rng    where dropout masks come from (the training loop's ``dropout.RowStreams``, or a numpy
               Generator; ``layers.dropout_mask``), or None for evaluation (no dropout)
        returns (logits (V, T·B) with column t·B + b, new state, cache for ``backward``)
        """
        ids = np.ascontiguousarray(x.T)  # (T, B)
        top, _, new_state, layers = stack_forward(self.cfg, params, ids, state, rng)
        logits = params["decoder.weight"] @ top  # (V, T·B)
        logits += params["decoder.bias"][:, None]
        return logits, new_state, (ids, layers, top)

    def backward(self, params, dlogits: np.ndarray, cache, grads: dict, dstate=None, d_input: list | None = None):
        """Backward of ``forward``: fills ``grads`` (same keys as params) and returns dL/d(state0).

        dlogits (V, T·B); dstate: per layer, gradient w.r.t. the final state (None = zeros); ``d_input``
        (a list) receives dL/d(layer 0's input projection) (G·H, T·B) (``memory``).
        """
        ids, layers, top = cache
        np.matmul(dlogits, top.T, out=grads["decoder.weight"])
        np.sum(dlogits, axis=1, out=grads["decoder.bias"])
        dout = params["decoder.weight"].T @ dlogits  # (H, T·B)
        return stack_backward(self.cfg, params, dout, layers, ids, grads, dstate, d_input=d_input)

    def logits(self, params, x: np.ndarray, state):
        """(B, T, V) logits for ids x (B, T) and the final state; no dropout."""
        logits, new_state, _ = self.forward(params, x, state, None)
        B, T = x.shape
        return logits.reshape(-1, T, B).transpose(2, 1, 0), new_state

    def read_layers(self, cache) -> list[dict[str, np.ndarray]]:
        """Per layer quantity → (T, H) from the cache of a forward pass over one row (B = 1)."""
        return [{q: np.ascontiguousarray(a[:, :, 0]) for q, a in self.spec.trace(c).items()} for _, c, _ in cache[1]]

    def loss_and_grads(self, params, x, y, state, rng=None, grads=None, dstate=None):
        """Mean cross-entropy over all B·T positions, the final state and dL/dstate0; fills ``grads``.

        x, y (B, T) int ids (y = x shifted by one).
        """
        logits, new_state, cache = self.forward(params, x, state, rng)
        targets = np.ascontiguousarray(y.T).reshape(-1)  # (T·B,) in column order
        loss = softmax_xent_(logits, targets)  # logits become dL/dlogits
        dstate0 = self.backward(params, logits, cache, grads, dstate)
        return loss, new_state, dstate0

    def sum_loss(self, params, x, y, state):
        """Σ −ln p(y | x) over all B·T positions (float64) and the final state; no dropout."""
        logits, new_state, _ = self.forward(params, x, state, None)
        return sum_logprob(logits, np.ascontiguousarray(y.T).reshape(-1)), new_state

    def trace(self, params, ids, warmup=(), chunk: int | None = 2048, on_chunk=None) -> Traced:
        """Read ``warmup`` (not recorded) and then ids (T,) from a zero state, every gate and state per
        layer and step; in chunks (the state carried: the same result as one pass, less memory)."""
        ids, warmup = np.asarray(ids, dtype=np.int64), np.asarray(warmup, dtype=np.int64)
        chunk = chunk or max(1, len(ids))
        state = self.zero_state(1)
        for s in range(0, len(warmup), chunk):
            _, state, _ = self.forward(params, warmup[None, s : s + chunk], state, None)
        parts, probs = [], []
        for s in range(0, len(ids), chunk):
            logits, state, cache = self.forward(params, ids[None, s : s + chunk], state, None)
            parts.append(self.read_layers(cache))
            probs.append(np.ascontiguousarray(softmax(logits).T))
            if on_chunk is not None:
                on_chunk(min(chunk, len(ids) - s))
        if len(parts) == 1:
            return Traced(parts[0], probs[0], state)
        names = self.spec.quantities
        layers = [{q: np.concatenate([part[k][q] for part in parts]) for q in names} for k in range(self.cfg.layers)]
        return Traced(layers, np.concatenate(probs), state)

    def stepper(self, params: dict, batch: int = 1):
        return Stepper(self, params, batch)

    def fill(self, params, ids: np.ndarray, masked: np.ndarray, choose, start: int):
        """Read left to right, choosing each masked character from the text before it (a mask at the very
        start: the guess after ``start``, a newline, as ``sample`` begins). Returns (ids, [(t, id, probs)])."""
        ids = ids.copy()
        done = []
        stepper = self.stepper(params, 1)
        logits = None
        for t in range(len(ids)):
            if masked[t]:
                if logits is None:  # nothing on the left: the model's guess after a newline
                    logits = stepper.step(start).copy()
                    stepper.reset()
                p = softmax(logits[0].astype(np.float64)[:, None])[:, 0]  # (V,)
                ids[t] = choose(p)
                done.append((t, int(ids[t]), p))
            logits = stepper.step(int(ids[t])).copy()
        return ids, done
