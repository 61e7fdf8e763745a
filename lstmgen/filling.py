"""Filling in masked characters: from both sides with a bidirectional model, from the left with a
left-to-right one (each kind's ``Network.fill``). What ``lstmgen fill`` prints and ``Model.fill`` returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstmgen.errors import ConfigError, VocabError
from lstmgen.generate import Sampler
from lstmgen.model import CharLM
from lstmgen.text import Vocab, visible


@dataclass
class Filled:
    text: str  # the text with every mask replaced
    filled: list[tuple[int, str, np.ndarray]]  # per mask, in text order: (index, character, probs (V,))
    from_left_only: bool  # a left-to-right model: each mask was chosen from the text on its left

    def to_json(self, vocab: Vocab) -> dict:
        """``fill --json``: the text, and per filled position its five likeliest characters."""
        return {"text": self.text, "filled": [
            {"index": int(t), "char": c,
             "top": [[vocab.chars[i], round(float(p[i]), 6)] for i in np.argsort(-p, kind="stable")[:5]]}
            for t, c, p in self.filled]}


def fill_text(model: CharLM, vocab: Vocab, text: str, mask: str = "_", *, temperature: float = 0.0,
              top_k: int | None = None, seed: int | None = None) -> Filled:
    """Every ``mask`` character of ``text`` replaced by the model's choice: the likeliest character at
    temperature 0, else a sample (top-k as in ``sample``). A bidirectional model fills the most certain
    mask first, then again with it fixed; a left-to-right model fills in reading order."""
    if len(mask) != 1:
        raise ConfigError(f"--mask {mask!r} must be one character")
    known = set(vocab.chars)
    unknown = sorted({c for c in text if c != mask and c not in known})
    if unknown:
        raise VocabError(f"the text has characters the model does not know: {', '.join(map(visible, unknown))}")
    masked = np.array([c == mask for c in text], dtype=bool)
    placeholder = vocab.index.get(" ", 0)  # what an unfilled mask reads as, before the first guess
    ids = np.array([placeholder if m else vocab.index[c] for c, m in zip(text, masked)], dtype=np.int64)
    sampler = Sampler(np.random.default_rng(seed), len(vocab), temperature, top_k)

    def choose(p: np.ndarray) -> int:
        return int(np.argmax(p)) if sampler.temperature == 0 else sampler(np.log(np.maximum(p, 1e-300)))

    filled, done = model.network.fill(model.params, ids, masked, choose, vocab.start_id)
    return Filled(vocab.decode(filled), [(t, vocab.chars[c], p) for t, c, p in sorted(done, key=lambda d: d[0])],
                  from_left_only=not model.network.both_sides)

