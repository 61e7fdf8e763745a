"""Pattern probes: which units track a label of the text (inside quotes, bracket depth, position in
the line, indentation, a regular expression) — ranked by AUC (binary labels) or correlation.

Notation: T characters of text, H hidden units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lstmgen.errors import ConfigError, LstmgenError
from lstmgen.probe import Trace

PROBES = ("quotes", "brackets", "line-position", "indent")


@dataclass
class Label:
    """A per-character label: binary (AUC) or continuous (correlation)."""

    name: str
    values: np.ndarray  # (T,) float64
    binary: bool
    description: str


def quote_state(text: str) -> np.ndarray:
    """1 after reading a character that leaves us inside double quotes (straight or curly), else 0."""
    out = np.zeros(len(text))
    inside = False
    for t, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        elif ch == "\u201c":
            inside = True
        elif ch == "\u201d":
            inside = False
        out[t] = inside
    return out


def bracket_depth(text: str) -> np.ndarray:
    """Nesting depth of (), [] and {} after each character (never below 0)."""
    out = np.zeros(len(text))
    depth = 0
    for t, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        out[t] = depth
    return out


def line_position(text: str) -> np.ndarray:
    """Characters read since the last newline (0 right after a newline)."""
    out = np.zeros(len(text))
    pos = 0
    for t, ch in enumerate(text):
        pos = 0 if ch == "\n" else pos + 1
        out[t] = pos
    return out


def indent(text: str) -> np.ndarray:
    """Leading spaces/tabs of the current line read so far (a tab counts 4)."""
    out = np.zeros(len(text))
    level, leading = 0, True
    for t, ch in enumerate(text):
        if ch == "\n":
            level, leading = 0, True
        elif leading and ch in " \t":
            level += 4 if ch == "\t" else 1
        else:
            leading = False
        out[t] = level
    return out


def regex_mask(text: str, rx: re.Pattern) -> np.ndarray:
    """1 for characters inside a match of the pattern."""
    out = np.zeros(len(text))
    for m in rx.finditer(text):
        out[m.start() : m.end()] = 1
    return out


def parse_probe(spec: str) -> re.Pattern | None:
    """Check a --probe value before any work: the compiled pattern for regex:PATTERN, else None."""
    if spec.startswith("regex:") and len(spec) > len("regex:"):
        pat = spec[len("regex:") :]
        try:
            return re.compile(pat)
        except re.error as e:
            raise ConfigError(f"--probe regex:{pat} is not a valid regular expression: {e}") from e
    if spec not in PROBES:
        raise ConfigError(f"--probe must be one of {', '.join(PROBES)} or regex:PATTERN, got {spec!r}")
    return None


def make_label(spec: str, text: str) -> Label:
    """quotes | brackets | line-position | indent | regex:PATTERN → the label of every character."""
    rx = parse_probe(spec)
    if rx is not None:
        lab = Label(spec, regex_mask(text, rx), True, f"inside a match of /{rx.pattern}/")
    elif spec == "quotes":
        lab = Label(spec, quote_state(text), True, "inside double quotes")
    elif spec == "brackets":
        lab = Label(spec, bracket_depth(text), False, "bracket nesting depth")
    elif spec == "line-position":
        lab = Label(spec, line_position(text), False, "characters since the last newline")
    else:
        lab = Label(spec, indent(text), False, "indentation of the current line")
    if np.ptp(lab.values) == 0:
        raise LstmgenError(f"nothing to probe: the label '{lab.description}' is the same for every character "
                           "of the text; inspect a text where it varies (--text or --file)")
    return lab


def auc(values: np.ndarray, labels: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
    """Per column of values (T, H), the area under the ROC curve for binary labels (T,).

    Mann–Whitney with average ranks for ties: P(value of a positive > value of a negative).
    ``ranks`` (from ``_average_ranks(values)``) may be passed to score several labels at once.
    """
    pos = labels > 0.5
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if ranks is None:
        ranks = _average_ranks(values)
    return (ranks[pos].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..T down each column of (T, H), ties sharing their average rank."""
    v = np.ascontiguousarray(values.T, dtype=np.float64)  # (H, T): sort contiguous rows
    H, T = v.shape
    order = np.argsort(v, axis=1)  # any order within ties: they get their average rank
    sv = np.take_along_axis(v, order, axis=1)
    idx = np.broadcast_to(np.arange(T), (H, T))
    starts = np.ones((H, T), dtype=bool)
    starts[:, 1:] = sv[:, 1:] != sv[:, :-1]
    ends = np.ones((H, T), dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, idx, 0), axis=1)  # where each tie run starts
    last = np.minimum.accumulate(np.where(ends, idx, T - 1)[:, ::-1], axis=1)[:, ::-1]  # and ends
    ranks = np.empty((H, T))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks.T


def correlation(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of values (T, H) with labels (T,); 0 for constant units."""
    v = values.astype(np.float64) - values.mean(axis=0)
    y = labels - labels.mean()
    den = np.sqrt((v * v).sum(axis=0) * (y @ y))
    return np.divide(v.T @ y, den, out=np.zeros(v.shape[1]), where=den > 0)


@dataclass
class UnitScore:
    layer: int
    quantity: str
    unit: int
    score: float  # AUC (binary) or correlation (continuous)
    strength: float  # how well it tracks the label either way: |AUC − ½|·2 or |r|, in [0, 1]


@dataclass
class ProbeResult:
    label: Label
    ranking: list[UnitScore]  # best first, every (layer, quantity, unit)
    chance: float  # best strength with the label rolled by half the text (same structure, no alignment)


def _scores(trace: Trace, labels: list[np.ndarray], binary: bool) -> list[list[UnitScore]]:
    """For each label, every (layer, quantity, unit) scored: AUC or correlation."""
    out = [[] for _ in labels]
    for k, layer in enumerate(trace.layers):
        for q, v in layer.items():
            ranks = _average_ranks(v) if binary else None  # shared by all labels
            for n, y in enumerate(labels):
                s = auc(v, y, ranks) if binary else correlation(v, y)
                strength = np.abs(s - 0.5) * 2 if binary else np.abs(s)
                out[n].extend(UnitScore(k, q, j, float(s[j]), float(strength[j])) for j in range(len(s)))
    return out


def probe(trace: Trace, spec: str) -> ProbeResult:
    """Rank every unit of every layer and quantity by how well it tracks the label ``spec``."""
    label = make_label(spec, trace.text)
    rolled = np.roll(label.values, len(label.values) // 2)
    both = [label.values] + ([rolled] if np.ptp(rolled) > 0 else [])
    scores = _scores(trace, both, label.binary)
    ranking = sorted(scores[0], key=lambda u: -u.strength)
    chance = max(u.strength for u in scores[1]) if len(scores) > 1 else 0.0
    return ProbeResult(label, ranking, chance)
