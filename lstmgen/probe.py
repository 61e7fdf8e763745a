"""The data behind ``inspect``: gate traces, saturation, unit ranking, parameters, exports (pattern
probes: ``probes``).

Everything here is computation on a model and a text; rendering lives in ``view.py``.

Notation: T characters of text, H hidden units, V vocabulary, L layers. A *quantity* is one of a
cell's per-step vectors (gates after their nonlinearity, the cell state c, the output h); row t
of every (T, H) array is taken right after the model read character t.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmgen.cells import CELLS
from lstmgen.config import ModelConfig
from lstmgen.corpus import corpus_label, held_out_text
from lstmgen.errors import ConfigError, CorpusError, LstmgenError
from lstmgen.generate import generate
from lstmgen.model import CharLM
from lstmgen.networks import network_for
from lstmgen.text import Vocab

# the quantities with values in (0, 1), from the cell table (i f o z r); g, n, h lie in (−1, 1), c is unbounded
SIGMOID = frozenset("".join(spec.sigmoid for spec in CELLS.values()))
RANK_BY = ("variance", "saturation", "mean")
LEFT, RIGHT = 0.1, 0.9


def quantities(cfg: ModelConfig) -> tuple[str, ...]:
    """What a trace of this model reports per layer, from its layers' cell table (``CellSpec``)."""
    return network_for(cfg).spec.quantities


def keep_gate(cfg: ModelConfig) -> str | None:
    """The gate that keeps the state when it is near 1 (an "integrator" unit keeps it there), if any."""
    return network_for(cfg).spec.keep_gate


# ---------------------------------------------------------------------- tracing


@dataclass
class Trace:
    """A model run over a text: per layer a dict quantity → (T, H), and probs (T, V)."""

    text: str
    ids: np.ndarray  # (T,)
    cell: str
    layers: list[dict[str, np.ndarray]]
    probs: np.ndarray  # (T, V)
    warmup: str = ""
    direction: str = "fwd"  # "bi": probs row t is the cloze distribution of character t itself
    reverse: list[dict[str, np.ndarray]] | None = None  # bi: the backward stack, row t after reading t ← right
    both_sides: bool = False  # the guess in row t is for x_t from both sides (a cloze model), not x_{t+1}

    @property
    def T(self) -> int:
        return len(self.ids)

    @property
    def H(self) -> int:
        return self.layers[0]["h"].shape[1]

    def target(self, t: int) -> int | None:
        """The character row t's guesses are for: the next one (None at the end); for bi, x_t itself."""
        if self.both_sides:
            return int(self.ids[t])
        return int(self.ids[t + 1]) if t + 1 < self.T else None

    def surprisal_bits(self) -> np.ndarray:
        """(T,) −log2 p(x_{t+1} | x_≤t); NaN for the last character (nothing follows it). For a
        bidirectional model −log2 p(x_t | x_<t, x_>t) of every character."""
        if self.both_sides:
            p = self.probs[np.arange(self.T), self.ids].astype(np.float64)
            return -np.log2(np.maximum(p, 1e-300))
        s = np.full(self.T, np.nan)
        if self.T > 1:
            p = self.probs[np.arange(self.T - 1), self.ids[1:]].astype(np.float64)
            s[:-1] = -np.log2(np.maximum(p, 1e-300))
        return s

    def top_predictions(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k likeliest next characters after each step: ids (T, k), probabilities (T, k)."""
        k = max(1, min(k, self.probs.shape[1]))
        part = np.argpartition(-self.probs, k - 1, axis=1)[:, :k]
        p = np.take_along_axis(self.probs, part, axis=1)
        order = np.argsort(-p, axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(p, order, axis=1)


def trace_text(model: CharLM, vocab: Vocab, text: str, warmup: str = "", chunk: int = 2048,
               on_chunk: Callable[[int], None] | None = None) -> Trace:
    """Run the model over ``warmup`` (not recorded) and then ``text``, from a zero state.

    Long texts are traced in chunks (the state is carried, so the result is the same as one
    pass); ``on_chunk(n)`` reports progress in characters.
    """
    ids = vocab.encode(text, "inspected text")
    w = vocab.encode(warmup, "warm-up text") if warmup else np.zeros(0, dtype=np.int64)
    traced = model.trace(ids, w, chunk, on_chunk)
    return Trace(text=text, ids=ids, cell=model.cfg.cell, layers=traced.layers, probs=traced.probs, warmup=warmup,
                 direction=model.cfg.direction, reverse=traced.reverse, both_sides=model.network.both_sides)


# ---------------------------------------------------------------------- statistics


def rank_units(values: np.ndarray, by: str, q: str) -> tuple[np.ndarray, np.ndarray]:
    """Units of one quantity (T, H) ordered best first by ``by``; returns (order (H,), score (H,)).

    variance: variance over time; saturation: fraction of steps saturated (sigmoid: < 0.1 or
    > 0.9; others: |tanh(x)| > 0.9); mean: mean absolute value.
    """
    v = values.astype(np.float64)
    if by == "variance":
        score = v.var(axis=0)
    elif by == "saturation":
        if q in SIGMOID:
            score = ((v < LEFT) | (v > RIGHT)).mean(axis=0)
        else:
            score = (np.abs(np.tanh(v) if q == "c" else v) > RIGHT).mean(axis=0)
    elif by == "mean":
        score = np.abs(v).mean(axis=0)
    else:
        raise ConfigError(f"--rank-by must be one of {', '.join(RANK_BY)}, got {by!r}")
    order = np.argsort(-score, kind="stable")
    return order, score


@dataclass
class Saturation:
    """Per unit, the fraction of steps a sigmoid gate is below 0.1 (left) and above 0.9 (right)."""

    layer: int
    gate: str
    left: np.ndarray  # (H,)
    right: np.ndarray  # (H,)

    @property
    def mostly_right(self) -> int:
        """Units right-saturated more than 90 % of the time (for the keep gate: integrators)."""
        return int((self.right > 0.9).sum())

    @property
    def mostly_left(self) -> int:
        return int((self.left > 0.9).sum())


def saturation(trace: Trace) -> list[Saturation]:
    """Karpathy et al. (2015)'s measurement, for every sigmoid gate of every layer."""
    out = []
    for k, layer in enumerate(trace.layers):
        for q, v in layer.items():
            if q in SIGMOID:
                out.append(Saturation(k, q, (v < LEFT).mean(axis=0), (v > RIGHT).mean(axis=0)))
    return out


def histogram(fracs: np.ndarray, bins: int = 10) -> np.ndarray:
    """Counts of units per tenth of [0, 1] (the last bin includes 1)."""
    counts, _ = np.histogram(np.asarray(fracs, dtype=np.float64), bins=bins, range=(0.0, 1.0))
    return counts


# ---------------------------------------------------------------------- parameters


@dataclass
class ParamRow:
    name: str  # tensor name, with the gate block as a suffix ("rnn.weight_ih_l0 [i]")
    shape: tuple[int, ...]
    count: int
    mean: float
    std: float
    norm: float
    block: bool  # a gate block of a stacked tensor (not counted in totals)


def _row(name: str, a: np.ndarray, block: bool = False) -> ParamRow:
    a64 = a.astype(np.float64)
    return ParamRow(name, tuple(a.shape), int(a.size), float(a64.mean()), float(a64.std()),
                    float(np.sqrt((a64 * a64).sum())), block)


def param_summary(cfg: ModelConfig, params: dict[str, np.ndarray]) -> list[ParamRow]:
    """Every tensor, and for stacked gate tensors every gate block (rows of W_i, W_f, …)."""
    rows = []
    H = cfg.hidden
    network = network_for(cfg)
    blocks = network.spec.gate_blocks
    for name, a in params.items():
        rows.append(_row(name, a))
        kind = "W" if ".weight_" in name else "b"
        extra = network.extra_rows(name)
        if extra is not None:  # a cell's own per-unit parameters (the peepholes p_i, p_f, p_o)
            rows.extend(_row(f"{name} p_{g}", a[b], block=True) for b, g in enumerate(extra))
        elif name.startswith("rnn.") and len(blocks) > 1:
            rows.extend(_row(f"{name} {kind}_{g}", a[b * H : (b + 1) * H], block=True) for b, g in enumerate(blocks))
    return rows


# ---------------------------------------------------------------------- exports


def export_arrays(trace: Trace) -> dict[str, np.ndarray]:
    """The trace as named arrays (docs/FORMAT.md): layer{k}.{q} (T, H), layer{k}_reverse.{q} for a
    bidirectional model's backward stack, probs (T, V)."""
    arrays = {}
    for k, layer in enumerate(trace.layers):
        for q, v in layer.items():
            arrays[f"layer{k}.{q}"] = np.ascontiguousarray(v)
    for k, layer in enumerate(trace.reverse or []):  # a bidirectional model's backward stack
        for q, v in layer.items():
            arrays[f"layer{k}_reverse.{q}"] = np.ascontiguousarray(v)
    arrays["probs"] = np.ascontiguousarray(trace.probs)
    return arrays


def export_npz(path: str | Path, trace: Trace) -> None:
    """``inspect --export``: text (0-d unicode) and ``export_arrays``; no pickled objects."""
    arrays = {"text": np.array(trace.text), **export_arrays(trace)}
    _write(path, lambda f: np.savez(f, **arrays))


def summary(cfg: ModelConfig, meta: dict, trace: Trace, source: str, warmup: str = "") -> str:
    """One line on what was traced: "lstm 1×384 · step 900 · 2,000 characters of … · 1.234 bits/char"."""
    loss_bits = float(np.nanmean(trace.surprisal_bits())) if trace.T > 1 else float("nan")
    return (f"{cfg.summary()} · step {meta.get('train', {}).get('step', '?')} · "
            f"{trace.T:,} characters of {source}"
            + (f" after {len(warmup):,} of warm-up" if warmup else "")
            + (f" · {loss_bits:.3f} bits/char" if np.isfinite(loss_bits) else ""))


def export_csv(path: str | Path, trace: Trace) -> None:
    """Long format, one row per value: t, char, layer, unit, quantity, value."""

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("t", "char", "layer", "unit", "quantity", "value"))
        units = range(trace.H)
        for t, ch in enumerate(trace.text):
            for k, layer in enumerate(trace.layers):
                for q, v in layer.items():
                    row = v[t].tolist()
                    w.writerows((t, ch, k, j, q, f"{row[j]:.7g}") for j in units)

    _write(path, write, text=True)


def inspect_json(trace: Trace, vocab: Vocab, ck, layer: int, units, shown_q, quantity: str, rank_by: str, top_k: int,
                 sats, found, param_rows, source: str) -> dict:
    """``inspect --json``: the view's data as one document (docs/FORMAT.md)."""
    cfg = ck.config
    top_ids, top_p = trace.top_predictions(top_k)
    bits = trace.surprisal_bits()
    steps = []
    for t in range(trace.T):
        vals = {q: (trace.layers[layer][q][t].mean() if units is None else trace.layers[layer][q][t][units]).tolist()
                for q in shown_q}
        steps.append({"t": t, "char": trace.text[t], "values": vals,
                      "top": [[vocab.chars[int(i)], float(p)] for i, p in zip(top_ids[t], top_p[t])],
                      "surprisal_bits": None if t + 1 >= trace.T else float(bits[t])})
    doc = {
        "model": {**cfg.to_dict(), "step": ck.meta.get("train", {}).get("step")},
        "source": source, "text": trace.text, "warmup": trace.warmup, "layer": layer,
        "units": units, "unit_values": "mean over units" if units is None else "per unit", "quantity": quantity,
        "rank_by": rank_by, "steps": steps,
        "saturation": [{"layer": s.layer, "gate": s.gate, "left": float(s.left.mean()), "right": float(s.right.mean()),
                        "mostly_left": s.mostly_left, "mostly_right": s.mostly_right,
                        "left_per_unit": s.left.tolist(), "right_per_unit": s.right.tolist()} for s in sats],
    }
    if found is not None:
        doc["probe"] = {"label": found.label.name, "description": found.label.description,
                        "measure": "auc" if found.label.binary else "correlation", "chance": found.chance,
                        "ranking": [{"layer": u.layer, "quantity": u.quantity, "unit": u.unit, "score": u.score,
                                     "strength": u.strength} for u in found.ranking[:50]]}
    if param_rows is not None:
        doc["params"] = [{"name": r.name, "shape": list(r.shape), "count": r.count, "mean": r.mean, "std": r.std,
                          "norm": r.norm, "block": r.block} for r in param_rows]
    return doc


def _write(path: str | Path, fill: Callable, text: bool = False) -> None:
    p = Path(path)
    try:
        with open(p, "w", encoding="utf-8", newline="") if text else open(p, "wb") as f:
            fill(f)
    except OSError as e:
        raise LstmgenError(f"cannot write {p}: {e.strerror or e}") from e


# ---------------------------------------------------------------------- which text


def default_text(meta: dict, model: CharLM, vocab: Vocab, n_chars: int = 2000) -> tuple[str, str]:
    """The start of the training corpus's validation tail (the end of its last file) when the corpus
    is at hand, from a line start; else a seeded sample of the model. Returns (text, where it came from)."""
    record = meta.get("corpus", {})
    val_frac = float(meta.get("train", {}).get("val_frac", 0.0) or 0.0)
    found = held_out_text(record, val_frac, n_chars)
    if found is not None and found[0] and set(found[0]) <= set(vocab.chars):
        text, start, file = found
        label = corpus_label(record)
        where = "validation tail" if val_frac > 0 else "start"
        return text, (f"the {where} of {label} (from character {start:,}"
                      + (f", in {file})" if label != file else ")"))
    try:
        model.stepper(1)
    except ConfigError:  # it cannot write a text of its own to read (a bidirectional model)
        raise CorpusError("the training corpus is not at hand and a bidirectional model cannot generate a text "
                          "to read: give one with --text or --file") from None
    text = "".join(generate(model, vocab, n_chars, temperature=0.8, rng=np.random.default_rng(0)))
    return text, "a sample of the model (seed 0, temperature 0.8): the training corpus is not at hand"
