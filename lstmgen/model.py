"""The character language model: embedding → L stacked cells → dropout → decoder → softmax.

Notation: B batch, T time, E embedding, H hidden, V vocabulary, L layers, G gate blocks.

Parameters are one flat dict of arrays named and laid out as PyTorch's ``state_dict`` of
``nn.Embedding(V, E)``, ``nn.LSTM/GRU/RNN(E, H, num_layers=L)`` and ``nn.Linear(H, V)``
(see docs/FORMAT.md), plus ``rnn.weight_peep_l{k}`` (3, H) for the peephole cell. All of
them are views into one contiguous buffer (``CharLM.flat``), and so are the gradients, so
that clipping and the optimizer run as a few vector operations over the whole model.

Speed notes. The first layer's input projection is a lookup: ``W_ih0 @ embedding.T + b`` is a
(G·H, V) table, gathered by character id; its gradient is reduced per id and folded back into
the embedding and W_ih0. A vocabulary larger than half the batch's positions (CJK text) takes
the GEMM ``W_ih0 @ embedding[ids].T`` instead, its embedding gradient reduced per id in
E-space. Every other input projection is one GEMM over all time steps, and every weight
gradient is one GEMM over all B·T columns (see ``cells``). The softmax and its gradient are
computed in place, split over threads when large.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lstmgen import jordan
from lstmgen.cells import CELLS, cifg_step, flat, gru_step, lstm_step, peephole_step, rnn_step, trace_quantities
from lstmgen.errors import ConfigError
from lstmgen.threads import column_spans, parallel_map

# jordan: an Elman network whose layer 0 reads the model's previous output (see ``jordan``)
CELL_TYPES = (*CELLS, "jordan")
MAX_LAYERS = 256
MAX_PARAMS = 1 << 31  # 8 GiB of float32 parameters, before gradients and optimizer moments
DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a model: everything needed to rebuild it from its parameters."""

    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    embed: int = 64
    dropout: float = 0.0
    dtype: str = "float32"
    direction: str = "fwd"  # "fwd": left-to-right language model; "bi": bidirectional cloze model (``cloze``)

    def __post_init__(self):
        if self.cell not in CELL_TYPES:
            raise ConfigError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELL_TYPES)}")
        for name in ("vocab_size", "layers", "hidden", "embed"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.direction not in ("fwd", "bi"):
            raise ConfigError(f"direction must be fwd or bi, got {self.direction!r}")
        if int(self.layers) > MAX_LAYERS:
            raise ConfigError(f"{self.layers} layers is more than lstmgen stacks (at most {MAX_LAYERS})")
        n = sum(math.prod(s) for s in param_shapes(self).values()) if self.direction in ("fwd", "bi") else 0
        if n > MAX_PARAMS:
            raise ConfigError(f"a model of {n:,} parameters ({n * 4 / 2**30:,.0f} GiB in float32) is more than lstmgen "
                              f"holds (at most {MAX_PARAMS:,}); choose a smaller --hidden, --embed or --layers")
        if self.direction == "bi" and self.cell == "jordan":
            raise ConfigError("--cell jordan --direction bi: a Jordan network reads its own previous output, which "
                              "needs one direction; choose another cell or --direction fwd")

    def summary(self) -> str:
        """The model in a few words: "lstm 1×384", "gru bi 2×256"."""
        return f"{self.cell}{' bi' if self.direction == 'bi' else ''} {self.layers}×{self.hidden}"

    @property
    def gates(self) -> int:
        return CELLS[self.cell].gates if self.cell in CELLS else 1

    @property
    def np_dtype(self):
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        return asdict(self)


def param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of every parameter, in a fixed order."""
    H = cfg.hidden
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (cfg.vocab_size, cfg.embed)}
    for sfx in SUFFIXES[cfg.direction]:  # a bidirectional model: the backward stack's keys end in _reverse
        shapes.update(_stack_shapes(cfg, sfx))
    shapes["decoder.weight"] = (cfg.vocab_size, H * (2 if cfg.direction == "bi" else 1))
    shapes["decoder.bias"] = (cfg.vocab_size,)
    return shapes


SUFFIXES = {"fwd": ("",), "bi": ("", "_reverse")}


def _stack_shapes(cfg: ModelConfig, sfx: str) -> dict[str, tuple[int, ...]]:
    GH, H = cfg.gates * cfg.hidden, cfg.hidden
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(cfg.layers):
        if cfg.cell == "jordan" and k == 0:  # reads the previous output y (V) instead of its own h
            shapes.update({"rnn.weight_ih_l0": (H, cfg.embed), "rnn.weight_yh_l0": (H, cfg.vocab_size),
                           "rnn.bias_ih_l0": (H,), "rnn.bias_yh_l0": (H,)})
            continue
        shapes[f"rnn.weight_ih_l{k}{sfx}"] = (GH, cfg.embed if k == 0 else H)
        shapes[f"rnn.weight_hh_l{k}{sfx}"] = (GH, H)
        shapes[f"rnn.bias_ih_l{k}{sfx}"] = (GH,)
        shapes[f"rnn.bias_hh_l{k}{sfx}"] = (GH,)
        if cfg.cell == "peephole":
            shapes[f"rnn.weight_peep_l{k}{sfx}"] = (3, H)
    return shapes


def flat_views(shapes: dict[str, tuple[int, ...]], dtype) -> tuple[np.ndarray, dict]:
    """One zeroed contiguous buffer and a dict of named views into it."""
    sizes = [int(np.prod(s)) for s in shapes.values()]
    flat = np.zeros(sum(sizes), dtype=dtype)
    views, off = {}, 0
    for (name, shape), n in zip(shapes.items(), sizes):
        views[name] = flat[off : off + n].reshape(shape)
        off += n
    return flat, views


def init_params(cfg: ModelConfig, params: dict, rng: np.random.Generator) -> None:
    """PyTorch's default initialisation, plus a forget-gate bias of 1 (Jozefowicz et al. 2015).

    Recurrent weights and biases and the decoder ~ U(−1/√H, 1/√H); embedding ~ N(0, 1).
    For cifg (f = 1 − i) the input-gate bias is −1, which gives the same initial f = σ(1).
    """
    H = cfg.hidden
    k = 1.0 / np.sqrt(H)
    for name, p in params.items():
        if name == "embedding.weight":
            p[...] = rng.standard_normal(p.shape)
        else:
            p[...] = rng.uniform(-k, k, p.shape)
    if cfg.cell not in ("lstm", "peephole", "cifg"):
        return
    for sfx in SUFFIXES[cfg.direction]:
        for layer in range(cfg.layers):
            b_ih, b_hh = params[f"rnn.bias_ih_l{layer}{sfx}"], params[f"rnn.bias_hh_l{layer}{sfx}"]
            if cfg.cell == "cifg":
                b_ih[:H], b_hh[:H] = -1.0, 0.0
            else:
                b_ih[H : 2 * H], b_hh[H : 2 * H] = 1.0, 0.0


def _rec_params(cfg: ModelConfig, params: dict, k: int, sfx: str = "") -> dict:
    rec = {"w_hh": params[f"rnn.weight_hh_l{k}{sfx}"]}
    if cfg.cell == "gru":
        rec["b_hh"] = params[f"rnn.bias_hh_l{k}{sfx}"]
    if cfg.cell == "peephole":
        rec["peep"] = params[f"rnn.weight_peep_l{k}{sfx}"]
    return rec


def _input_bias(cfg: ModelConfig, params: dict, k: int, sfx: str = "") -> np.ndarray:
    """The bias added to the input projection: b_ih + b_hh (GRU: b_hn stays in the cell; Jordan
    layer 0: b_ih + b_yh)."""
    if cfg.cell == "jordan" and k == 0:
        return params["rnn.bias_ih_l0"] + params["rnn.bias_yh_l0"]
    b = params[f"rnn.bias_ih_l{k}{sfx}"] + params[f"rnn.bias_hh_l{k}{sfx}"]
    if cfg.cell == "gru":
        b[2 * cfg.hidden :] = params[f"rnn.bias_ih_l{k}{sfx}"][2 * cfg.hidden :]
    return b  # (G·H,)


def input_table(cfg: ModelConfig, params: dict, sfx: str = "") -> np.ndarray:
    """(G·H, V): the first layer's input projection of every character, bias included."""
    table = params[f"rnn.weight_ih_l0{sfx}"] @ params["embedding.weight"].T  # (G·H, V)
    table += _input_bias(cfg, params, 0, sfx)[:, None]
    return table


def state_layout(cfg: ModelConfig) -> list[tuple[tuple[str, int], ...]]:
    """Per layer, the parts of its carried state and their rows: (h, c) for the LSTM family,
    (h,) otherwise; Jordan's layer 0 also carries y, the output fed back (V rows)."""
    if cfg.cell == "jordan":
        return [(("h", cfg.hidden), ("y", cfg.vocab_size))] + [(("h", cfg.hidden),)] * (cfg.layers - 1)
    parts = (("h", cfg.hidden), ("c", cfg.hidden))[: CELLS[cfg.cell].n_states]
    return [parts] * cfg.layers


def zero_state(cfg: ModelConfig, batch: int) -> list[tuple[np.ndarray, ...]]:
    """Per layer, a tuple of (rows, B) arrays (see ``state_layout``): (h, c), (h,) or (h, y)."""
    return [tuple(np.zeros((n, batch), dtype=cfg.np_dtype) for _, n in layer) for layer in state_layout(cfg)]


def forward(cfg, params, x, state, rng=None):
    """Forward over a batch of sequences.

    x      (B, T) int character ids
    state  per layer, tuple of (H, B) arrays (see ``zero_state``)
    rng    a numpy Generator for dropout masks, or None for evaluation (no dropout)
    returns (logits (V, T·B) with column t·B + b, new state, cache for ``backward``)
    """
    ids = np.ascontiguousarray(x.T)  # (T, B)
    T, B = ids.shape
    p = cfg.dropout if rng is not None else 0.0
    if cfg.cell == "jordan":  # the whole stack step by step (layer 0 reads the previous output)
        xp, inp = _layer0_input(cfg, params, ids, "")
        masks = [_dropout_mask(rng, (cfg.hidden, T, B), p, cfg.np_dtype) for _ in range(cfg.layers)] if p else None
        logits, new_state, jcache = jordan.forward(cfg, params, xp, state, masks)
        return logits, new_state, (ids, [(inp, jcache, None)], None)
    top, _, new_state, layers = stack_forward(cfg, params, ids, state, rng)
    logits = params["decoder.weight"] @ top  # (V, T·B)
    logits += params["decoder.bias"][:, None]
    return logits, new_state, (ids, layers, top)


def _layer0_input(cfg, params, ids: np.ndarray, sfx: str):
    """Layer 0's input projection xp (G·H, T, B), bias included, and its input for the gradient:
    gathered from the (G·H, V) table (inp None), or for a large vocabulary a GEMM of the embedded
    characters (inp (E, T·B))."""
    T, B = ids.shape
    if _lookup(cfg, T * B):
        return np.take(input_table(cfg, params, sfx), ids, axis=1), None
    inp = params["embedding.weight"][ids.reshape(-1)].T  # (E, T·B)
    xp = params[f"rnn.weight_ih_l0{sfx}"] @ inp  # (G·H, T·B): one GEMM for all steps
    xp += _input_bias(cfg, params, 0, sfx)[:, None]
    return xp.reshape(-1, T, B), inp


def stack_forward(cfg, params, ids: np.ndarray, state, rng=None, sfx: str = "", mask_top: bool = True):
    """The stacked cells over ids (T, B) (one direction; ``sfx`` picks the stack's keys).

    Returns (the top layer's output (H, T·B), dropout-masked when ``mask_top``; the top layer's
    output buffer (H, T+1, B) with the initial state in slot 0; the new state; per-layer caches).
    """
    spec = CELLS[cfg.cell]
    T, B = ids.shape
    p = cfg.dropout if rng is not None else 0.0
    xp, inp = _layer0_input(cfg, params, ids, sfx)
    new_state, layers = [], []
    for k in range(cfg.layers):
        if k > 0:  # inp (H, T·B): the layer below's output
            xp = params[f"rnn.weight_ih_l{k}{sfx}"] @ inp  # (G·H, T·B): one GEMM for all steps
            xp += _input_bias(cfg, params, k, sfx)[:, None]
            xp = xp.reshape(-1, T, B)
        hbuf, st, cache = spec.forward(xp, state[k], _rec_params(cfg, params, k, sfx))
        new_state.append(st)
        out = hbuf[:, 1:]  # (H, T, B)
        mask = None
        if p > 0.0 and (mask_top or k < cfg.layers - 1):
            mask = _dropout_mask(rng, out.shape, p, cfg.np_dtype)
            out = out * mask
        layers.append((inp, cache, mask))
        inp = flat(out)
    return inp, hbuf, new_state, layers


def softmax(z: np.ndarray) -> np.ndarray:
    """softmax over axis 0 (the vocabulary), as a new array."""
    e = np.exp(z - z.max(axis=0))
    e /= e.sum(axis=0)
    return e


def _dropout_mask(rng, shape: tuple[int, ...], p: float, dtype) -> np.ndarray:
    """Inverted dropout: kept units scaled by 1/(1 − p) (one draw of ``shape`` from rng)."""
    mask = rng.random(shape, dtype=dtype) >= p
    return mask.astype(dtype) * dtype(1.0 / (1.0 - p))


def softmax_xent_(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean −ln softmax(logits)[target] over columns; turns ``logits`` into its gradient in place.

    logits (V, N), targets (N,) → loss; afterwards logits holds (softmax − onehot(target)) / N.
    Large arrays are split into column spans, one per thread (exp is most of the cost).
    """
    V, N = logits.shape
    scale = logits.dtype.type(1.0 / N)

    def span(lo_hi: tuple[int, int]) -> float:
        lo, hi = lo_hi
        a = logits[:, lo:hi]  # (V, n) view
        cols, tgt = np.arange(hi - lo), targets[lo:hi]
        m = a.max(axis=0)
        if not -60.0 < m.min() <= m.max() < 60.0:  # exp could overflow or z underflow: shift
            a -= m  # (softmax is shift-invariant; a pass saved when logits are moderate)
        picked = a[tgt, cols]  # log-space: no underflow for improbable targets
        np.exp(a, out=a)
        z = a.sum(axis=0)
        a *= scale / z
        a[tgt, cols] -= scale
        return float(np.sum(np.log(z) - picked, dtype=np.float64))

    spans = column_spans(N, min_cols=max(1, 2**19 // V))  # threads pay off from ~0.5 M elements
    return sum(parallel_map(span, spans)) / N


def _sum_logprob(logits: np.ndarray, targets: np.ndarray) -> float:
    """Σ −ln softmax(logits)[target], exact in log space (no underflow of tiny probabilities)."""
    m = logits.max(axis=0)
    lse = np.log(np.exp(logits - m).sum(axis=0)) + m
    return float(np.sum(lse - logits[targets, np.arange(logits.shape[1])], dtype=np.float64))


def _lookup(cfg: ModelConfig, n: int) -> bool:
    """Whether layer 0's input projection of n positions is cheaper as a (G·H, V) table lookup
    than as an embedding GEMM: yes unless the vocabulary is large next to n (measured)."""
    return cfg.vocab_size <= n // 2


def _sum_by_id(a: np.ndarray, ids_flat: np.ndarray, V: int) -> np.ndarray:
    """(F, V): the columns of ``a`` (F, N), one per position, summed by character id.

    Sort the columns by id, then one reduceat over contiguous runs: cost independent of V
    (a one-hot GEMM costs 2·F·N·V and ``np.add.at`` is slow).
    """
    order = np.argsort(ids_flat, kind="stable")
    uniq, starts = np.unique(ids_flat[order], return_index=True)
    out = np.zeros((a.shape[0], V), dtype=a.dtype)
    out[:, uniq] = np.add.reduceat(np.take(a, order, axis=1), starts, axis=1)
    return out


def backward(cfg, params, dlogits, cache, grads, dstate=None, d_input: list | None = None):
    """Backward of ``forward``: fills ``grads`` (same keys as params) and returns dL/d(state0).

    dlogits (V, T·B); dstate: per layer, gradient w.r.t. the final state (None = zeros); ``d_input``
    (a list) receives dL/d(layer 0's input projection) (G·H, T·B), from which the gradient with
    respect to each position's embedded character follows (``memory``).
    """
    ids, layers, top = cache
    if cfg.cell == "jordan":
        inp, jcache, _ = layers[0]
        d_flat, dstate0 = jordan.backward(cfg, params, dlogits, jcache, grads, dstate)
        if d_input is not None:
            d_input.append(d_flat)
        np.sum(d_flat, axis=1, out=grads["rnn.bias_ih_l0"])
        _input_projection_grads(cfg, params, grads, d_flat, inp, ids)
        return dstate0
    np.matmul(dlogits, top.T, out=grads["decoder.weight"])
    np.sum(dlogits, axis=1, out=grads["decoder.bias"])
    dout = params["decoder.weight"].T @ dlogits  # (H, T·B)
    return stack_backward(cfg, params, dout, layers, ids, grads, dstate, d_input=d_input)


def stack_backward(cfg, params, dout, layers, ids, grads, dstate=None, sfx: str = "", add_embedding: bool = False,
                   d_input: list | None = None):
    """Backward of ``stack_forward`` from dout (H, T·B), the gradient w.r.t. the top layer's output
    (after its mask, if it had one); fills the stack's gradients (``add_embedding``: adds to the
    embedding's instead of setting it) and returns dL/d(state0). ``d_input`` as in ``backward``."""
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
        grads[f"rnn.weight_hh_l{k}{sfx}"][...] = drec["w_hh"]
        db = grads[f"rnn.bias_ih_l{k}{sfx}"]
        np.sum(d_flat, axis=1, out=db)
        grads[f"rnn.bias_hh_l{k}{sfx}"][...] = drec.get("b_hh", db)
        if "peep" in drec:
            grads[f"rnn.weight_peep_l{k}{sfx}"][...] = drec["peep"]
        if k == 0 and d_input is not None:
            d_input.append(d_flat)
        dout = _input_projection_grads(cfg, params, grads, d_flat, inp, ids, k, sfx, add_embedding)
    return dstate0


def _input_projection_grads(cfg, params, grads, d_flat, inp, ids, k: int = 0, sfx: str = "", add: bool = False):
    """Gradients of layer k's input projection W_ih · inp from d_flat (G·H, T·B); returns dL/d(inp)
    (into the layer below) for a GEMM projection. Layer 0 by table lookup (inp None) or GEMM
    folds its gradient into the embedding."""
    w_ih = params[f"rnn.weight_ih_l{k}{sfx}"]
    emb = grads["embedding.weight"]
    if inp is not None:  # the input projection was a GEMM
        np.matmul(d_flat, inp.T, out=grads[f"rnn.weight_ih_l{k}{sfx}"])
        dout = w_ih.T @ d_flat  # (F, T·B): into the layer below, or the embedded characters
        if k == 0:
            g = _sum_by_id(dout, ids.reshape(-1), cfg.vocab_size).T
            emb[...] = emb + g if add else g
        return dout
    dtab = _sum_by_id(d_flat, ids.reshape(-1), cfg.vocab_size)  # (G·H, V): layer 0 through the lookup table
    np.matmul(dtab, params["embedding.weight"], out=grads[f"rnn.weight_ih_l0{sfx}"])
    if add:
        emb += dtab.T @ w_ih
    else:
        np.matmul(dtab.T, w_ih, out=emb)
    return None


class CharLM:
    """A character language model: configuration plus parameters (views of one flat buffer)."""

    def __init__(self, cfg: ModelConfig, seed: int | None = 0, params: dict | None = None):
        self.cfg = cfg
        self.shapes = param_shapes(cfg)
        self.flat, self.params = flat_views(self.shapes, cfg.np_dtype)
        if params is None:
            init_params(cfg, self.params, np.random.default_rng(seed))
        else:
            self.load_params(params)

    def load_params(self, params: dict) -> None:
        """Copy named arrays (PyTorch layout) in; every name and shape must match."""
        if set(params) != set(self.shapes):
            missing = sorted(set(self.shapes) - set(params))
            extra = sorted(set(params) - set(self.shapes))
            raise ConfigError(f"parameter names do not match the model: missing {missing}, extra {extra}")
        for name, shape in self.shapes.items():
            if tuple(params[name].shape) != shape:
                raise ConfigError(f"{name} has shape {tuple(params[name].shape)}, expected {shape}")
            self.params[name][...] = params[name]

    @property
    def num_params(self) -> int:
        return int(self.flat.size)

    def zero_state(self, batch: int = 1):
        return zero_state(self.cfg, batch)

    def new_grads(self) -> tuple[np.ndarray, dict]:
        return flat_views(self.shapes, self.cfg.np_dtype)

    def loss_and_grads(self, x, y, state, rng=None, grads=None, dstate=None):
        """Mean cross-entropy over all B·T positions, its gradients, the final state and dL/dstate0.

        x, y (B, T) int ids (y = x shifted by one); ``grads`` is a dict from ``new_grads`` to fill.
        """
        if grads is None:
            _, grads = self.new_grads()
        logits, new_state, cache = forward(self.cfg, self.params, x, state, rng)
        targets = np.ascontiguousarray(y.T).reshape(-1)  # (T·B,) in column order
        loss = softmax_xent_(logits, targets)  # logits become dL/dlogits
        dstate0 = backward(self.cfg, self.params, logits, cache, grads, dstate)
        return loss, grads, new_state, dstate0

    def cloze_loss_and_grads(self, x, right, state, rng=None, grads=None, dstate=None):
        """A bidirectional model's mean cross-entropy of every character of x (B, T) given both sides
        (``right`` (B, W): the characters after the chunk), its gradients, the forward stack's final
        state and dL/dstate0."""
        from lstmgen import cloze

        if grads is None:
            _, grads = self.new_grads()
        logits, new_state, cache = cloze.forward(self.cfg, self.params, x, right, state, rng)
        loss = softmax_xent_(logits, np.ascontiguousarray(x.T).reshape(-1))
        dstate0 = cloze.backward(self.cfg, self.params, logits, cache, grads, dstate)
        return loss, grads, new_state, dstate0

    def cloze_sum_loss(self, rows):
        """Σ −ln p(x_t | x_<t, x_>t) over every character of rows (S, n), each row read whole from zero
        states on both sides, no dropout (float64)."""
        from lstmgen import cloze

        ids = np.ascontiguousarray(np.asarray(rows, dtype=np.int64).T)  # (n, S)
        logits = cloze.row_logits(self.cfg, self.params, ids)
        return _sum_logprob(logits.reshape(logits.shape[0], -1), ids.reshape(-1))

    def logits(self, x, state):
        """(B, T, V) logits for ids x (B, T) and the final state; no dropout."""
        logits, new_state, _ = forward(self.cfg, self.params, x, state, None)
        B, T = x.shape
        return logits.reshape(-1, T, B).transpose(2, 1, 0), new_state

    def sum_loss(self, x, y, state):
        """Σ −ln p(y | x) over all B·T positions (float64) and the final state; no dropout."""
        logits, new_state, _ = forward(self.cfg, self.params, x, state, None)
        return _sum_logprob(logits, np.ascontiguousarray(y.T).reshape(-1)), new_state

    def trace(self, ids, state=None):
        """Run one sequence ids (T,) and report every gate and state per layer and step.

        Returns (per layer a dict quantity → (T, H) array, probs (T, V), final state).
        Quantities: i, f, g, o, c, h (lstm, peephole, cifg); r, z, n, h (gru); h (rnn).
        Row t is taken right after the model read character t.
        """
        x = np.asarray(ids, dtype=np.int64)[None, :]  # (1, T)
        if state is None:
            state = self.zero_state(1)
        logits, new_state, (_, layers, _) = forward(self.cfg, self.params, x, state, None)
        if self.cfg.cell == "jordan":
            hs = layers[0][1][0]  # per layer (H, T+1, 1)
            out = [{"h": np.ascontiguousarray(h[:, 1:, 0].T)} for h in hs]
        else:
            out = [{name: np.ascontiguousarray(a[:, :, 0]) for name, a in trace_quantities(self.cfg.cell, c).items()}
                   for _, c, _ in layers]
        return out, np.ascontiguousarray(softmax(logits).T), new_state

    def trace_bi(self, ids):
        """A bidirectional model over one text ids (T,), both stacks from zero states: (forward stack
        per layer quantity → (T, H), row t after reading x_t left to right; backward stack, row t after
        reading x_t right to left; cloze probabilities (T, V) of each character)."""
        from lstmgen import cloze

        ids = np.asarray(ids, dtype=np.int64)[:, None]  # (T, 1)
        T = len(ids)

        def stack(seq, sfx, order):  # per layer quantity → (T, H) in text order; the top output buffer
            _, hbuf, _, layers = stack_forward(self.cfg, self.params, np.ascontiguousarray(seq),
                                               zero_state(self.cfg, 1), None, sfx)
            return [{q: np.ascontiguousarray(a[order, :, 0]) for q, a in trace_quantities(self.cfg.cell, c).items()}
                    for _, c, _ in layers], hbuf

        fwd, hf = stack(ids, "", slice(None))
        bwd, hb = stack(ids[::-1], "_reverse", slice(None, None, -1))
        # the decoder at t reads the forward state before x_t and the backward state after x_{t+1}
        z = cloze.decode(self.params, hf[:, :T], hb[:, T - 1 :: -1])[:, :, 0]  # (V, T)
        return fwd, bwd, np.ascontiguousarray(softmax(z).T)

    def stepper(self, batch: int = 1):
        if self.cfg.direction == "bi":
            raise ConfigError("a bidirectional (cloze) model cannot generate left to right; use lstmgen fill")
        return jordan.JordanStepper(self, batch) if self.cfg.cell == "jordan" else Stepper(self, batch)


class Stepper:
    """One-step generation: (state, character ids) → (new state, logits), allocation-free.

    Precomputes the first layer's (V, G·H) input table (bias folded in) and, for the other
    layers, a fused [W_ih | W_hh] matrix acting on a stacked [x; h] buffer (for GRU the two
    stay apart: r gates W_hn h). All buffers live in the stepper and are reused; one step is
    one small GEMM per layer, the cell's elementwise step (shared with the sequence forward)
    and the decoder. ``state`` is the per-layer state, updated in place by ``step``.
    """

    def __init__(self, model: CharLM, batch: int = 1):
        cfg, params = model.cfg, model.params
        self.cfg, self.batch = cfg, batch
        L, H, B, dt = cfg.layers, cfg.hidden, batch, cfg.np_dtype
        G = cfg.gates * H
        self.table = np.ascontiguousarray(input_table(cfg, params).T)  # (V, G·H): a row per id
        self.rec = [_rec_params(cfg, params, k) for k in range(L)]
        self.gru = cfg.cell == "gru"
        self.w, self.b = [], []  # per layer: the matrix applied to [x; h] (or h) and the bias
        for k in range(L):
            w_hh = params[f"rnn.weight_hh_l{k}"]
            if k == 0 or self.gru:
                self.w.append(w_hh)
            else:
                self.w.append(np.ascontiguousarray(np.concatenate([params[f"rnn.weight_ih_l{k}"], w_hh], axis=1)))
            self.b.append(None if k == 0 else _input_bias(cfg, params, k)[:, None])
        self.w_ih = [None] + [params[f"rnn.weight_ih_l{k}"] for k in range(1, L)]
        self.w_dec, self.b_dec = params["decoder.weight"], params["decoder.bias"][:, None]
        self.z = [np.zeros((2 * H if k > 0 else H, B), dtype=dt) for k in range(L)]  # [x; h] (layer 0: h)
        self.c = [np.zeros((H, B), dtype=dt) for _ in range(L)]
        self.a = np.empty((G, B), dtype=dt)
        self.ah = np.empty((G, B), dtype=dt)
        self.xp = np.empty((G, B), dtype=dt)
        self.tmp = np.empty((H, B), dtype=dt)
        self.tc = np.empty((H, B), dtype=dt)
        self.hn = np.empty((H, B), dtype=dt)
        self.logits_buf = np.empty((cfg.vocab_size, B), dtype=dt)
        if cfg.cell == "peephole":
            self.peep = [tuple(r["peep"][j][:, None] for j in range(3)) for r in self.rec]
        self.reset()

    def _h(self, k: int) -> np.ndarray:
        return self.z[k][self.cfg.hidden :] if k > 0 else self.z[0]

    @property
    def state(self):
        """Per layer, (h, c) or (h,), as (H, B) views of the stepper's buffers."""
        n = CELLS[self.cfg.cell].n_states
        return [(self._h(k), self.c[k])[:n] for k in range(self.cfg.layers)]

    def reset(self, state=None) -> None:
        for k in range(self.cfg.layers):
            self._h(k)[...] = 0.0 if state is None else state[k][0]
            self.c[k][...] = 0.0 if state is None or len(state[k]) < 2 else state[k][1]

    def step(self, ids) -> np.ndarray:
        """Feed character ids (B,) — or one int when B = 1 — and return the next-character logits
        (B, V) (a reused buffer)."""
        cell, H = self.cfg.cell, self.cfg.hidden
        if isinstance(ids, int):
            x0 = self.table[ids][:, None]  # (G·H, 1)
        else:
            x0 = self.table[np.asarray(ids).reshape(self.batch)].T  # (G·H, B)
        a, tmp = self.a, self.tmp
        for k in range(self.cfg.layers):
            h = self._h(k)
            if k > 0:
                self.z[k][:H] = self._h(k - 1)  # this layer's input
            if self.gru:
                if k == 0:
                    xp = x0
                else:
                    xp = np.matmul(self.w_ih[k], self.z[k][:H], out=self.xp)
                    xp += self.b[k]
                np.matmul(self.w[k], h, out=self.ah)
                gru_step(xp, self.ah, self.rec[k]["b_hh"][2 * H :, None], h, a, self.hn, h, tmp)
                continue
            np.matmul(self.w[k], self.z[k], out=a)  # W_hh h (layer 0) or [W_ih | W_hh] [x; h]
            a += x0 if k == 0 else self.b[k]
            if cell == "rnn":
                rnn_step(a, h)
            elif cell == "lstm":
                lstm_step(a, self.c[k], self.c[k], self.tc, h, tmp)
            elif cell == "cifg":
                cifg_step(a, self.c[k], self.c[k], self.tc, h, tmp)
            else:
                peephole_step(a, self.peep[k], self.c[k], self.c[k], self.tc, h, tmp)
        np.matmul(self.w_dec, self._h(self.cfg.layers - 1), out=self.logits_buf)  # (V, B)
        self.logits_buf += self.b_dec
        return self.logits_buf.T
