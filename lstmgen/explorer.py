"""``inspect --html``: one self-contained page that explores a model's trace of a text.

The page (``explorer.html`` beside this module, filled in here) holds the trace as data (every
layer × quantity × unit × character, quantised to 8 bits per value on a linear scale per array,
base64) and its own vanilla JavaScript and CSS: no network,
no external scripts or fonts. In the browser a person picks a unit (by layer, quantity and number,
from ranked lists, or with ←/→), sees the text coloured by it on the terminal's scale, hovers a
character for the unit's gates, the top-5 guesses and the surprisal, and selects a stretch of
text to rank every unit by how much more it is "on" inside than outside (LSTMVis's match view).
The URL fragment holds the view: ``#layer=0&q=c&unit=58`` or ``#sel=120-135``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from importlib import resources

import numpy as np

from lstmgen.errors import LstmgenError
from lstmgen.memory import Influence
from lstmgen.probe import SIGMOID, Trace, histogram, rank_units, saturation
from lstmgen.probes import PROBES, probe
from lstmgen.terminal import shown

LEVELS = 255  # 8 bits per value


def quantise(v: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(T, H) → uint8 codes on a linear scale [lo, hi]; v ≈ lo + code · (hi − lo) / 255."""
    v = np.asarray(v, dtype=np.float64)
    lo, hi = float(np.min(v)), float(np.max(v))
    if not hi > lo:
        hi = lo + 1e-6
    codes = np.rint((v - lo) / (hi - lo) * LEVELS).clip(0, LEVELS).astype(np.uint8)
    return codes, lo, hi


def dequantise(codes: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return lo + codes.astype(np.float64) * (hi - lo) / LEVELS


def page_data(trace: Trace, vocab_chars: str, summary: str, top_k: int = 5, ranked: int = 20) -> dict:
    """Everything the page needs, as one JSON-able document."""
    layers = []
    stacks = trace.layers + (trace.reverse or [])  # a bidirectional model: the backward stack's layers after
    names = [str(k) for k in range(len(trace.layers))] + [f"{k} ←" for k in range(len(trace.reverse or []))]
    for layer in stacks:
        qs = {}
        for q, v in layer.items():
            codes, lo, hi = quantise(v)
            rank_var = rank_units(v, "variance", q)[0][:ranked]
            rank_sat = rank_units(v, "saturation", q)[0][:ranked]
            qs[q] = {"lo": lo, "hi": hi, "data": base64.b64encode(codes.tobytes()).decode("ascii"),
                     "sigmoid": q in SIGMOID, "variance": rank_var.tolist(), "saturation": rank_sat.tolist()}
        layers.append(qs)
    ids, probs = trace.top_predictions(top_k)
    surprisal = trace.surprisal_bits()
    probes = []
    for spec in PROBES:
        try:
            found = probe(trace, spec)
        except LstmgenError:  # the label does not vary over this text (no brackets, no indentation, …)
            continue
        probes.append({"name": found.label.name, "chance": found.chance,
                       "units": [{"layer": u.layer, "q": u.quantity, "unit": u.unit, "score": round(u.score, 3),
                                  "strength": round(u.strength, 3)} for u in found.ranking[:ranked]]})
    sats = [{"layer": s.layer, "gate": s.gate, "left": histogram(s.left).tolist(), "right": histogram(s.right).tolist(),
             "mostly_left": s.mostly_left, "mostly_right": s.mostly_right} for s in saturation(trace)]
    return {
        "text": trace.text, "T": trace.T, "H": trace.H, "cell": trace.cell, "summary": summary,
        "direction": trace.direction, "both_sides": trace.both_sides, "layer_names": names,
        "stack_layers": len(trace.layers),
        "vocab": vocab_chars, "layers": layers,
        "top_ids": ids.astype(int).tolist(), "top_p": np.round(probs.astype(np.float64), 4).tolist(),
        "surprisal": [None if not math.isfinite(s) else round(float(s), 3) for s in surprisal],
        "probes": probes, "saturation": sats,
    }


# Inside <script type="application/json"> the HTML parser looks for "</script" and, after "<!--", for
# "<script" too (the "double-escaped" state, where "</script>" no longer ends the block): every <, >
# and & is written as a JSON escape, so no text of the model's input can end or change the block.
# U+2028/2029 are escaped as well (a JavaScript string literal would end a line there).
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SLOT = re.compile(r"__(TITLE|SUMMARY|DATA)__")


def script_json(doc) -> str:
    """``doc`` as JSON that is inert inside an HTML ``<script>`` element, whatever strings it holds."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)


def influence_data(found: Influence) -> dict:
    """The page's influence rows: per predicted position t, the influence of the characters d = 0 … D
    before it (and, bidirectional, after it), relative to the row's largest, as 8-bit codes."""
    left = np.nan_to_num(found.left, nan=0.0)
    right = None if found.right is None else np.nan_to_num(found.right, nan=0.0)
    top = left.max(axis=1) if right is None else np.maximum(left.max(axis=1), right.max(axis=1))
    top = np.where(top > 0, top, 1.0)[:, None]

    def codes(m):
        return base64.b64encode(np.rint(m / top * LEVELS).clip(0, LEVELS).astype(np.uint8).tobytes()).decode("ascii")

    return {"D": left.shape[1] - 1, "rows": left.shape[0], "left": codes(left),
            "right": None if right is None else codes(right)}


def render(trace: Trace, vocab_chars: str, summary: str, title: str, influence: Influence | None = None) -> str:
    """The whole page as one string.

    The template's slots are filled in one pass (what goes into one slot is never searched for
    another), names as escaped HTML text, with the characters a terminal would act on made visible
    as in every other view, and the data as :func:`script_json`."""
    doc = page_data(trace, vocab_chars, summary)
    doc["infl"] = influence_data(influence) if influence is not None else None
    values = {"TITLE": html.escape(shown(title)), "SUMMARY": html.escape(shown(summary)), "DATA": script_json(doc)}
    template = resources.files("lstmgen").joinpath("explorer.html").read_text(encoding="utf-8")
    return _SLOT.sub(lambda m: values[m.group(1)], template)
