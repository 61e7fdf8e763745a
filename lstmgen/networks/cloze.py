"""Bidirectional cloze models: predict each character from both sides.

Over a text x_0 … x_{N−1}, a forward stack reads x_0 … x_{t−1} and a backward stack (keys ending
in ``_reverse``) reads x_{N−1} … x_{t+1}; the decoder sees both top states and predicts x_t:

    p(x_t | x_<t, x_>t) = softmax(W_dec · drop([h→_{t−1}; h←_{t+1}]) + b_dec)

The two stacks never see the character they predict and meet only at the decoder (as in ELMo).
At the ends of a text the missing side is the zero state.

Training reads chunks of T characters: the forward stack carries its state across batches as a
left-to-right model does; the backward stack's context lies in later batches, so before each
chunk it reads the W characters after the chunk (right to left, from a zero state, without loss
and without gradient: truncated, as the forward stack's past is), and then the chunk. Evaluation
reads each row whole: the backward stack right to left in one pass, then the forward stack.

Notation: B batch, T time, H hidden, V vocabulary.
"""

from __future__ import annotations

import numpy as np

from lstmgen.cells import flat
from lstmgen.errors import ConfigError
from lstmgen.networks.base import Network, Traced, _streams
from lstmgen.networks.layers import dropout_mask, stack_backward, stack_forward
from lstmgen.networks.losses import softmax, softmax_xent_, sum_logprob

REFUSAL = ("a bidirectional (cloze) model predicts a character from both sides and cannot generate left to "
           "right; fill in masked text with: lstmgen fill CKPT 'th_ c_t'")


class Cloze(Network):
    stacks = ("", "_reverse")
    both_sides = True
    description = " (bidirectional cloze)"

    # ------------------------------------------------------------------ training
    def train_batch(self, stream, index: int, T: int):
        """The chunk x (B, T) and the characters after it (B, ≤ T): the backward stack's warm-up."""
        return stream.get_with_right(index, T)

    def exact_batch(self, x, y):
        return x, None  # no right context: its warm-up has no gradient, which gradcheck would see

    def loss_and_grads(self, params, x, right, state, rng=None, grads=None, dstate=None):
        """Mean cross-entropy of every character of x (B, T) given both sides (``right`` (B, W): the
        characters after the chunk), the forward stack's final state and dL/dstate0; fills ``grads``."""
        logits, new_state, cache = self.forward(params, x, right, state, rng)
        loss = softmax_xent_(logits, np.ascontiguousarray(x.T).reshape(-1))
        dstate0 = self.backward(params, logits, cache, grads, dstate)
        return loss, new_state, dstate0

    def forward(self, params, x: np.ndarray, right: np.ndarray | None, state, rng=None):
        """Cloze logits for every character of the chunk x (B, T).

        right  (B, W) the characters after the chunk (the backward stack's warm-up), or None / W = 0
        state  the forward stack's carried state
        returns (logits (V, T·B) with column t·B + b, the forward stack's new state, cache)
        """
        cfg = self.cfg
        ids = np.ascontiguousarray(x.T)  # (T, B)
        T, B = ids.shape
        H = cfg.hidden
        p = cfg.dropout if rng is not None else 0.0
        _, hf, new_state, layers_f = stack_forward(cfg, params, ids, state, rng, "", mask_top=False)
        sb = self.zero_state(B)
        if right is not None and right.shape[1] > 0:  # the right context, read right to left (no gradient)
            _, _, sb, _ = stack_forward(cfg, params, np.ascontiguousarray(right[:, ::-1].T), sb, None, "_reverse")
        rev = np.ascontiguousarray(ids[::-1])
        _, hb, _, layers_b = stack_forward(cfg, params, rev, sb, rng, "_reverse", mask_top=False)
        dec_in = np.empty((2 * H, T, B), dtype=hf.dtype)  # [h→_{t−1}; h←_{t+1}] at each position t
        dec_in[:H] = hf[:, :T]  # slot t: the forward state before x_t
        dec_in[H:] = hb[:, T - 1 :: -1] if T > 0 else hb[:, :0]  # slot T−1−t: after reading x_{T−1} … x_{t+1}
        mask = dropout_mask(rng, dec_in.shape, p, cfg.np_dtype) if p > 0 else None
        if mask is not None:
            dec_in *= mask
        logits = params["decoder.weight"] @ flat(dec_in)
        logits += params["decoder.bias"][:, None]
        return logits, new_state, (ids, rev, layers_f, layers_b, flat(dec_in), mask)

    def backward(self, params, dlogits: np.ndarray, cache, grads: dict, dstate=None, d_input: list | None = None):
        """Backward of ``forward``: fills grads; returns dL/d(forward stack's initial state). ``d_input``
        (a list) receives each stack's dL/d(layer 0's input projection) (G·H, T·B), forward stack first
        (the backward stack's columns in its own, reversed, reading order)."""
        cfg = self.cfg
        ids, rev, layers_f, layers_b, dec_in, mask = cache
        T, B = ids.shape
        H = cfg.hidden
        np.matmul(dlogits, dec_in.T, out=grads["decoder.weight"])
        np.sum(dlogits, axis=1, out=grads["decoder.bias"])
        d = (params["decoder.weight"].T @ dlogits).reshape(2 * H, T, B)
        if mask is not None:
            d *= mask
        # forward stack: position t read buffer slot t; slot 0 is the initial top state, slot s ≥ 1 output s−1
        dout_f = np.zeros((H, T, B), dtype=d.dtype)
        dout_f[:, : T - 1] = d[:H, 1:]
        dstate0 = stack_backward(cfg, params, flat(dout_f), layers_f, ids, grads, dstate, d_input=d_input)
        top = list(dstate0[-1])
        top[0] = top[0] + d[:H, 0]
        dstate0[-1] = tuple(top)
        # backward stack: position t read slot T−1−t; slot 0 is the warm-up state (no gradient), s ≥ 1 output s−1
        slots = d[H:, ::-1]  # (H, T, B): slot s
        dout_b = np.zeros((H, T, B), dtype=d.dtype)
        dout_b[:, : T - 1] = slots[:, 1:]
        stack_backward(cfg, params, flat(dout_b), layers_b, rev, grads, None, "_reverse", add_embedding=True,
                       d_input=d_input)
        return dstate0

    # ------------------------------------------------------------------ evaluation: whole rows
    def eval_rows(self, ids, streams: int, chunk: int):
        """Rows of every character (x = y: the targets are the inputs), each read whole from both ends."""
        streams = _streams(ids, streams, chunk)
        rows = np.asarray(ids[: len(ids) // streams * streams]).reshape(streams, -1)
        return rows, rows

    def sum_losses(self, params, x, y, chunk, should_stop=None):
        """Σ −ln p(x_t | x_<t, x_>t) over every character of rows x (S, n), each row read whole from zero
        states on both sides (one agreement, like one chunk); None when ``should_stop`` says so."""
        if should_stop is not None and should_stop():
            return None
        if not x.shape[0]:
            return 0.0, int(x.size)
        ids = np.ascontiguousarray(np.asarray(x, dtype=np.int64).T)  # (n, S)
        logits = self.row_logits(params, ids)
        return sum_logprob(logits.reshape(logits.shape[0], -1), ids.reshape(-1)), int(x.size)

    def row_tops(self, params, ids: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Both stacks over whole rows ids (N, S) (time-major), each from a zero state, no dropout:
        the decoder's inputs, forward (H, N, S) = h→_{t−1} and backward (H, N, S) = h←_{t+1}."""
        cfg = self.cfg
        N, S = ids.shape
        fwd = np.zeros((cfg.hidden, N, S), dtype=cfg.np_dtype)
        bwd = np.zeros((cfg.hidden, N, S), dtype=cfg.np_dtype)
        for out, seq, sfx in ((fwd, ids, ""), (bwd, np.ascontiguousarray(ids[::-1]), "_reverse")):
            state = self.zero_state(S)
            for s in range(0, N, chunk):  # position j (in reading order) reads the state after the one before
                part = seq[s : s + chunk]
                _, hbuf, state, _ = stack_forward(cfg, params, np.ascontiguousarray(part), state, None, sfx)
                out[:, s : s + len(part)] = hbuf[:, : len(part)]
        return fwd, bwd[:, ::-1]

    def row_logits(self, params, ids: np.ndarray) -> np.ndarray:
        """(V, N, S) cloze logits of whole rows ids (N, S), both stacks from zero states, no dropout."""
        return decode(params, *self.row_tops(params, ids))

    # ------------------------------------------------------------------ reading
    def trace(self, params, ids, warmup=(), chunk=None, on_chunk=None) -> Traced:
        """Both stacks over warm-up + text from zero states, one pass each (the warm-up rows dropped): the
        forward stack per layer quantity → (T, H), row t after reading x_t left to right; the backward
        stack, row t after reading x_t right to left; the cloze probabilities (T, V) of each character."""
        ids = np.asarray(ids, dtype=np.int64)
        w = len(warmup)
        full = np.concatenate([np.asarray(warmup, dtype=np.int64), ids])[:, None]  # (N, 1)
        N = len(full)

        def stack(seq, sfx, order):  # per layer quantity → (N, H) in text order; the top output buffer
            _, hbuf, _, layers = stack_forward(self.cfg, params, np.ascontiguousarray(seq), self.zero_state(1),
                                               None, sfx)
            return [{q: np.ascontiguousarray(a[order, :, 0][w:]) for q, a in self.spec.trace(c).items()}
                    for _, c, _ in layers], hbuf

        fwd, hf = stack(full, "", slice(None))
        bwd, hb = stack(full[::-1], "_reverse", slice(None, None, -1))
        # the decoder at t reads the forward state before x_t and the backward state after x_{t+1}
        z = decode(params, hf[:, :N], hb[:, N - 1 :: -1])[:, :, 0]  # (V, N)
        if on_chunk is not None:
            on_chunk(len(ids))
        return Traced(fwd, np.ascontiguousarray(softmax(z).T)[w:], None, bwd)

    def stepper(self, params, batch: int = 1):
        raise ConfigError(REFUSAL)

    def fill(self, params, ids: np.ndarray, masked: np.ndarray, choose, start: int):
        """Fill the masked positions of ids (N,), the most certain first, again with it fixed, until none is left.

        An unfilled mask is read by both stacks as the character the model currently finds likeliest
        there; in the first round, as whatever ``ids`` holds there (the CLI puts a space). ``choose(probs
        (V,))`` picks the character (greedy or sampled). Returns the filled ids and, per filled position in
        filling order, (index, chosen id, probs).
        """
        ids = np.array(ids, dtype=np.int64)
        todo = set(np.flatnonzero(masked).tolist())
        done = []
        while todo:
            probs = softmax(self.row_logits(params, ids[:, None])[:, :, 0])  # (V, N)
            order = sorted(todo)
            best = max(order, key=lambda t: probs[:, t].max())  # the most certain position first
            for t in order:  # the unfilled masks read the current likeliest characters
                ids[t] = int(np.argmax(probs[:, t]))
            c = int(choose(probs[:, best]))
            ids[best] = c
            done.append((best, c, probs[:, best].copy()))
            todo.remove(best)
        return ids, done


def decode(params, fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
    """(V, N, S) logits from the decoder's inputs h→_{t−1} fwd and h←_{t+1} bwd, each (H, N, S)."""
    W = params["decoder.weight"]
    H, N, S = fwd.shape
    logits = (W[:, :H] @ fwd.reshape(H, -1) + W[:, H:] @ np.ascontiguousarray(bwd).reshape(H, -1)).reshape(-1, N, S)
    logits += params["decoder.bias"][:, None, None]
    return logits
