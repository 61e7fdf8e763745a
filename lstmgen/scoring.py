"""How well a model predicts a text: what ``lstmgen eval --json`` prints and ``Model.eval`` returns."""

from __future__ import annotations

import math

from lstmgen.errors import CorpusError
from lstmgen.model import CharLM
from lstmgen.text import Vocab
from lstmgen.training.evaluation import evaluate_ids

LN2 = math.log(2)


def score_text(model: CharLM, vocab: Vocab, text: str, what: str = "text") -> dict:
    """``{"loss", "bpc", "perplexity", "chars", "direction"}``: the mean of −ln p(x_t | x_<t) over
    t = 1 … N−1 in nats, the whole text read as one sequence from a zero state without dropout (a
    bidirectional model: −ln p(x_t | x_<t, x_>t) over every t, each stack in one pass)."""
    ids = vocab.encode(text, what)
    if len(ids) < 2:
        raise CorpusError(f"{what} needs at least 2 characters, it has {len(ids)}")
    loss = evaluate_ids(model, ids, streams=1, chunk=1024)
    return {"loss": loss, "bpc": loss / LN2, "perplexity": math.exp(loss), "chars": len(text),
            "direction": model.cfg.direction}
