"""The layer stack every network kind builds on: parameter layout, initialisation, the first layer's
input projection, and the stacked cells forward and backward (one direction at a time).

Notation: B batch, T time, E embedding, H hidden, V vocabulary, L layers, G gate blocks.

Parameters are one flat dict of arrays named and laid out as PyTorch's ``state_dict`` of
``nn.Embedding(V, E)``, ``nn.LSTM/GRU/RNN(E, H, num_layers=L)`` and ``nn.Linear(H, V)``
(docs/FORMAT.md), plus what a cell adds (``CellSpec.extra``: the peephole's ``rnn.weight_peep_l{k}``).
All of them are views into one contiguous buffer, and so are the gradients, so that clipping and the
optimizer run as a few vector operations over the whole model.

Speed notes. The first layer's input projection is a lookup: ``W_ih0 @ embedding.T + b`` is a
(G·H, V) table, gathered by character id; its gradient is reduced per id and folded back into
the embedding and W_ih0. A vocabulary larger than half the batch's positions (CJK text) takes
the GEMM ``W_ih0 @ embedding[ids].T`` instead, its embedding gradient reduced per id in
E-space. Every other input projection is one GEMM over all time steps, and every weight
gradient is one GEMM over all B·T columns (see ``cells``).
"""

from __future__ import annotations

import numpy as np

from lstmgen.cells import CELLS, CellSpec, flat
from lstmgen.dropout import RowStreams, keep_scale


def flat_views(shapes: dict[str, tuple[int, ...]], dtype) -> tuple[np.ndarray, dict]:
    """One zeroed contiguous buffer and a dict of named views into it."""
    sizes = [int(np.prod(s)) for s in shapes.values()]
    buf = np.zeros(sum(sizes), dtype=dtype)
    views, off = {}, 0
    for (name, shape), n in zip(shapes.items(), sizes):
        views[name] = buf[off : off + n].reshape(shape)
        off += n
    return buf, views


def stack_shapes(spec: CellSpec, cfg, sfx: str = "", first: int = 0) -> dict[str, tuple[int, ...]]:
    """The parameters of one stack of ``spec`` cells, layers ``first`` … L−1 (keys ending in ``sfx``)."""
    GH, H = spec.gates * cfg.hidden, cfg.hidden
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(first, cfg.layers):
        shapes[f"rnn.weight_ih_l{k}{sfx}"] = (GH, cfg.embed if k == 0 else H)
        shapes[f"rnn.weight_hh_l{k}{sfx}"] = (GH, H)
        shapes[f"rnn.bias_ih_l{k}{sfx}"] = (GH,)
        shapes[f"rnn.bias_hh_l{k}{sfx}"] = (GH,)
        for name, rows in spec.extra.items():
            shapes[f"rnn.{name}_l{k}{sfx}"] = (len(rows), H)
    return shapes


def init_uniform(params: dict, hidden: int, rng: np.random.Generator) -> None:
    """PyTorch's default initialisation: the embedding ~ N(0, 1), everything else ~ U(−1/√H, 1/√H)."""
    k = 1.0 / np.sqrt(hidden)
    for name, p in params.items():
        if name == "embedding.weight":
            p[...] = rng.standard_normal(p.shape)
        else:
            p[...] = rng.uniform(-k, k, p.shape)


def init_cell_biases(spec: CellSpec, cfg, params: dict, sfx: str = "") -> None:
    """The cell's own bias initialisation (``CellSpec.init_bias``: the forget-gate bias) on every layer."""
    if spec.init_bias is None:
        return
    for k in range(cfg.layers):
        spec.init_bias(params[f"rnn.bias_ih_l{k}{sfx}"], params[f"rnn.bias_hh_l{k}{sfx}"], cfg.hidden)


def rec_params(spec: CellSpec, params: dict, k: int, sfx: str = "") -> dict:
    """What layer k's cell reads besides its input projection (``CellSpec.recurrent``)."""
    return {key: params[f"rnn.{name}_l{k}{sfx}"] for key, name in spec.recurrent.items()}


def input_bias(spec: CellSpec, params: dict, k: int, sfx: str = "") -> np.ndarray:
    """The bias added to layer k's input projection: b_ih + b_hh, except the gate blocks whose b_hh
    stays in the cell (``CellSpec.bias_kept``: GRU's n), which take b_ih alone. (G·H,)"""
    b_ih = params[f"rnn.bias_ih_l{k}{sfx}"]
    b = b_ih + params[f"rnn.bias_hh_l{k}{sfx}"]
    if spec.bias_kept:
        kept = len(b) // spec.gates * spec.bias_kept
        b[-kept:] = b_ih[-kept:]
    return b


def input_table(params: dict, bias: np.ndarray, sfx: str = "") -> np.ndarray:
    """(G·H, V): the first layer's input projection of every character, ``bias`` included."""
    table = params[f"rnn.weight_ih_l0{sfx}"] @ params["embedding.weight"].T  # (G·H, V)
    table += bias[:, None]
    return table


def lookup(vocab_size: int, n: int) -> bool:
    """Whether layer 0's input projection of n positions is cheaper as a (G·H, V) table lookup
    than as an embedding GEMM: yes unless the vocabulary is large next to n (measured)."""
    return vocab_size <= n // 2


def layer0_input(params: dict, ids: np.ndarray, bias: np.ndarray, sfx: str = ""):
    """Layer 0's input projection xp (T, G·H, B) (time-major, as the cells read it), ``bias``
    included, and its input for the gradient: gathered from the (G·H, V) table step by step
    straight into its time-major place (inp None), or for a large vocabulary a GEMM of the
    embedded characters (inp (E, T·B))."""
    T, B = ids.shape
    V = params["embedding.weight"].shape[0]
    if lookup(V, T * B):
        table = input_table(params, bias, sfx)  # (G·H, V)
        if ids.size and not (0 <= ids.min() and ids.max() < V):
            raise IndexError(f"character ids outside the vocabulary of {V}")
        xp = np.empty((T, table.shape[0], B), dtype=table.dtype)
        for t in range(T):  # (ids checked once above: "wrap" writes straight into out, "raise" buffers)
            np.take(table, ids[t], axis=1, out=xp[t], mode="wrap")
        return xp, None
    inp = params["embedding.weight"][ids.reshape(-1)].T  # (E, T·B)
    return time_major_plus(params[f"rnn.weight_ih_l0{sfx}"] @ inp, bias, T), inp  # one GEMM for all steps


def time_major_plus(xp_flat: np.ndarray, bias: np.ndarray, T: int) -> np.ndarray:
    """A projection of all steps (G·H, T·B) plus ``bias`` (G·H,), laid out time-major (T, G·H, B)
    as the cells read it: the add and the transposing copy in one pass."""
    F, n = xp_flat.shape
    out = np.empty((T, F, n // T), dtype=xp_flat.dtype)
    np.add(xp_flat.reshape(F, T, -1).transpose(1, 0, 2), bias[:, None], out=out)
    return out


def dropout_mask(rng, shape: tuple[int, ...], p: float, dtype) -> np.ndarray:
    """Inverted dropout: kept units scaled by 1/P(kept), one draw of ``shape`` from rng — the training
    loop's per-row streams (``lstmgen.dropout.RowStreams``), or a numpy Generator (kept where a
    uniform draw is ≥ p, scaled by 1/(1 − p))."""
    if isinstance(rng, RowStreams):
        mask, scale = rng.keep(shape, p).astype(dtype), keep_scale(p)
    else:
        mask, scale = (rng.random(shape, dtype=dtype) >= p).astype(dtype), 1.0 / (1.0 - p)
    mask *= dtype(scale)
    return mask


def stack_forward(cfg, params, ids: np.ndarray, state, rng=None, sfx: str = "", mask_top: bool = True):
    """The stacked cells over ids (T, B) (one direction; ``sfx`` picks the stack's keys).

    Returns (the top layer's output (H, T·B), dropout-masked when ``mask_top``; the top layer's
    output buffer (H, T+1, B) with the initial state in slot 0; the new state; per-layer caches).
    """
    spec = CELLS[cfg.cell]
    T, B = ids.shape
    p = cfg.dropout if rng is not None else 0.0
    xp, inp = layer0_input(params, ids, input_bias(spec, params, 0, sfx), sfx)
    new_state, layers = [], []
    for k in range(cfg.layers):
        if k > 0:  # inp (H, T·B): the layer below's output
            xp = time_major_plus(params[f"rnn.weight_ih_l{k}{sfx}"] @ inp, input_bias(spec, params, k, sfx), T)
        hbuf, st, cache = spec.forward(xp, state[k], rec_params(spec, params, k, sfx))
        new_state.append(st)
        out = hbuf[:, 1:]  # (H, T, B)
        mask = None
        if p > 0.0 and (mask_top or k < cfg.layers - 1):
            mask = dropout_mask(rng, out.shape, p, cfg.np_dtype)
            out = out * mask
        layers.append((inp, cache, mask))
        inp = flat(out)
    return inp, hbuf, new_state, layers


def stack_backward(cfg, params, dout, layers, ids, grads, dstate=None, sfx: str = "", add_embedding: bool = False,
                   d_input: list | None = None):
    """Backward of ``stack_forward`` from dout (H, T·B), the gradient w.r.t. the top layer's output
    (after its mask, if it had one); fills the stack's gradients (``add_embedding``: adds to the
    embedding's instead of setting it) and returns dL/d(state0). ``d_input`` (a list) receives
    dL/d(layer 0's input projection) (G·H, T·B), from which the gradient with respect to each
    position's embedded character follows (``memory``)."""
    spec = CELLS[cfg.cell]
    T, B = ids.shape
    H = cfg.hidden
    dstate0 = [None] * cfg.layers
    for k in range(cfg.layers - 1, -1, -1):
        inp, cache_k, mask = layers[k]
        if mask is not None:
            dout *= flat(mask)
        if dstate is not None:
            dst = dstate[k]
        else:  # truncated BPTT: the final state does not affect the loss
            dst = tuple(np.zeros((H, B), dtype=dout.dtype) for _ in range(spec.n_states))
        d_flat, dstate0[k], drec = spec.backward(dout.reshape(H, T, B), dst, cache_k)  # d_flat (G·H, T·B)
        db = grads[f"rnn.bias_ih_l{k}{sfx}"]
        np.sum(d_flat, axis=1, out=db)
        grads[f"rnn.bias_hh_l{k}{sfx}"][...] = db  # (a cell with a b_hh of its own overwrites it below)
        for key, name in spec.recurrent.items():
            grads[f"rnn.{name}_l{k}{sfx}"][...] = drec[key]
        if k == 0 and d_input is not None:
            d_input.append(d_flat)
        dout = input_projection_grads(params, grads, d_flat, inp, ids, k, sfx, add_embedding)
    return dstate0


def input_projection_grads(params, grads, d_flat, inp, ids, k: int = 0, sfx: str = "", add: bool = False):
    """Gradients of layer k's input projection W_ih · inp from d_flat (G·H, T·B); returns dL/d(inp)
    (into the layer below) for a GEMM projection. Layer 0 by table lookup (inp None) or GEMM
    folds its gradient into the embedding (``add``: adds to it instead of setting it)."""
    w_ih = params[f"rnn.weight_ih_l{k}{sfx}"]
    emb = grads["embedding.weight"]
    V = emb.shape[0]
    if inp is not None:  # the input projection was a GEMM
        np.matmul(d_flat, inp.T, out=grads[f"rnn.weight_ih_l{k}{sfx}"])
        dout = w_ih.T @ d_flat  # (F, T·B): into the layer below, or the embedded characters
        if k == 0:
            g = sum_by_id(dout, ids.reshape(-1), V).T
            emb[...] = emb + g if add else g
        return dout
    dtab = sum_by_id(d_flat, ids.reshape(-1), V)  # (G·H, V): layer 0 through the lookup table
    np.matmul(dtab, params["embedding.weight"], out=grads[f"rnn.weight_ih_l0{sfx}"])
    if add:
        emb += dtab.T @ w_ih
    else:
        np.matmul(dtab.T, w_ih, out=emb)
    return None


def sum_by_id(a: np.ndarray, ids_flat: np.ndarray, V: int) -> np.ndarray:
    """(F, V): the columns of ``a`` (F, N), one per position, summed by character id.

    Sort the columns by id, then one reduceat over contiguous runs: cost independent of V
    (a one-hot GEMM costs 2·F·N·V and ``np.add.at`` is slow).
    """
    order = np.argsort(ids_flat, kind="stable")
    uniq, starts = np.unique(ids_flat[order], return_index=True)
    out = np.zeros((a.shape[0], V), dtype=a.dtype)
    out[:, uniq] = np.add.reduceat(np.take(a, order, axis=1), starts, axis=1)
    return out
