"""lstmgen from Python (a notebook, a script): the command line's train, sample, eval, inspect and
fill, returning strings, dicts and arrays instead of printing them.

    >>> import lstmgen
    >>> run = lstmgen.train("@structured", max_time="1m", hidden=128)   # the run directory
    >>> model = lstmgen.load(run)
    >>> print(model.sample(200, prime="expr: (", seed=0))
    >>> gates = model.trace('She said "no".')["layer0.f"]               # (T, H) forget gates
    >>> model.memory('She said "no".')["span"]                          # how far back a guess reaches
    >>> model.explore('She said "no".')                                 # the explorer, inline in Jupyter

Every call goes through the same code as its command (same text for the same seed, the same
numbers), and errors are raised as ``lstmgen.LstmgenError`` subclasses carrying the messages the
command line prints.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmgen import checkpoint as ckpt_io
from lstmgen import explorer, probe
from lstmgen.errors import ConfigError, LstmgenError
from lstmgen.filling import fill_text
from lstmgen.generate import sample_pieces
from lstmgen.memory import PAGE_DISTANCE, influence, report
from lstmgen.model import CharLM, ModelConfig
from lstmgen.scoring import score_text
from lstmgen.terminal import shown
from lstmgen.text import Vocab


class Model:
    """A trained model loaded from a checkpoint: ``lstmgen.load(path)``."""

    def __init__(self, checkpoint: ckpt_io.Checkpoint, path: Path):
        self._ck, self.path = checkpoint, path
        self._model = CharLM(checkpoint.config, params=checkpoint.params)
        self._vocab = Vocab(checkpoint.meta["vocab"])

    # ------------------------------------------------------------------ what it is
    @property
    def config(self) -> ModelConfig:
        """cell, direction, layers, hidden, embed, dropout, dtype, vocab_size."""
        return self._model.cfg

    @property
    def vocab(self) -> str:
        """The characters the model knows, in id order."""
        return self._vocab.chars

    @property
    def num_params(self) -> int:
        return self._model.num_params

    @property
    def step(self) -> int | None:
        """The training step the checkpoint was written at."""
        return self._ck.meta.get("train", {}).get("step")

    @property
    def network(self) -> CharLM:
        """The model underneath, for experiments: a ``CharLM`` (parameters as NumPy arrays in ``.params``;
        its own ``.network`` is the network kind that computes with them, ``lstmgen.networks``)."""
        return self._model

    def __repr__(self) -> str:
        c = self.config
        return (f"<lstmgen.Model {c.summary()}, embed {c.embed}, vocab {c.vocab_size}, {self.num_params:,} params, "
                f"{c.dtype}, step {self.step} from {shown(self.path)}>")

    # ------------------------------------------------------------------ what it does
    def sample(self, length: int = 500, prime: str = "", temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None, num_samples: int = 1,
               stop: str | None = None) -> str | list[str]:
        """Generated text, exactly what ``lstmgen sample`` prints with the same options and seed (the
        prime first, no newline added); a list of ``num_samples`` strings when it is above 1."""
        texts = [""] * num_samples if num_samples >= 1 else []
        for i, piece in sample_pieces(self._model, self._vocab, length, num_samples=num_samples, prime=prime,
                                      temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop=stop):
            texts[i] += piece
        return texts[0] if num_samples == 1 else texts

    def eval(self, text: str) -> dict:
        """``lstmgen eval --json`` of a file holding ``text``: loss (nats/char), bpc, perplexity, chars,
        direction."""
        return score_text(self._model, self._vocab, text, "text")

    def trace(self, text: str, warmup: str = "") -> dict[str, np.ndarray]:
        """What the network does at every character of ``text`` (from a zero state, after reading
        ``warmup``): the arrays of ``lstmgen inspect --text TEXT --export`` — ``layer{k}.{q}`` (T, H)
        for each layer k and quantity q (i f g o c h; r z n h; h), ``layer{k}_reverse.{q}`` for a
        bidirectional model's backward stack, ``probs`` (T, V)."""
        return probe.export_arrays(self._trace(text, warmup))

    def memory(self, text: str, max_distance: int = 50) -> dict:
        """How far back each prediction reaches: one entry of ``lstmgen memory --json``'s ``models``
        (``influence`` per distance 0 … max_distance, ``span``; a bidirectional model adds
        ``influence_right``); ``lstmgen.memory.influence`` gives the whole (t, d) matrix."""
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) or not 1 <= max_distance <= 1000:
            raise ConfigError(f"max_distance must be a whole number from 1 to 1000, got {max_distance!r}")
        return report(self._model, self._vocab.encode(text, "text"), max_distance, str(self.path))

    def fill(self, text: str, mask: str = "_", temperature: float = 0.0, top_k: int | None = None,
             seed: int | None = None) -> str:
        """``text`` with every ``mask`` character filled in, as ``lstmgen fill`` prints it."""
        return fill_text(self._model, self._vocab, text, mask, temperature=temperature, top_k=top_k,
                         seed=seed).text

    def explore(self, text: str | None = None) -> Explorer:
        """The ``inspect --html`` explorer of ``text`` (default: the start of the training corpus's
        held-out tail when it is at hand, as ``inspect`` reads it); shown inline in Jupyter, or
        ``.save(path)``."""
        if text is None:
            text, source = probe.default_text(self._ck.meta, self._model, self._vocab)
        else:
            source = "a text given in Python"
        trace = self._trace(text)
        summary = shown(probe.summary(self.config, self._ck.meta, trace, source))
        found = influence(self._model, self._vocab.encode(text), PAGE_DISTANCE)
        page = explorer.render(trace, self._vocab.chars, summary, title=f"lstmgen: {self.path.name}", influence=found)
        return Explorer(page, summary)

    def _trace(self, text: str, warmup: str = "") -> probe.Trace:
        if not text:
            raise ConfigError("the text to trace is empty")
        return probe.trace_text(self._model, self._vocab, text, warmup=warmup)


@dataclass
class Explorer:
    """One self-contained explorer page (no network access): ``_repr_html_`` shows it in Jupyter."""

    html: str
    summary: str

    def _repr_html_(self) -> str:
        # in an iframe of its own: the page's script and styles stay out of the notebook's
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" style="width:100%;height:720px;'
                f'border:1px solid #ddd" sandbox="allow-scripts" title="{html.escape(self.summary)}"></iframe>')

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        try:
            path.write_text(self.html, encoding="utf-8")
        except OSError as e:
            raise LstmgenError(f"cannot write {path}: {e.strerror or e}") from e
        return path

    def __repr__(self) -> str:
        return f"<lstmgen.Explorer {self.summary}; .save(path) writes the page>"


def load(ckpt: str | os.PathLike) -> Model:
    """A checkpoint file, or a run directory (its best.npz, else latest.npz), as ``lstmgen CKPT``."""
    path = ckpt_io.resolve(ckpt)
    return Model(ckpt_io.load(path), path)


def train(*corpus: str | os.PathLike, out: str | os.PathLike | None = None, **options) -> Path:
    """``lstmgen train CORPUS… --out OUT --OPTION VALUE…``; returns the run directory.

    Options by the command's long names with underscores: ``max_time="2m"``, ``hidden=384``,
    ``workers=2``, ``resume="runs/x"``, ``direction="bi"``. No corpus: the bundled one (``"@default"``;
    ``"@structured"`` names the other). Progress shows in a notebook bar under Jupyter. Worker
    processes are started and stopped with the call; a KeyboardInterrupt (the notebook's stop
    button) saves ``latest.npz`` and is raised again; errors are raised as ``LstmgenError``.
    """
    args = ["train", *(os.fspath(c) for c in corpus)]
    if out is not None:
        args += ["--out", os.fspath(out)]
    for name, value in options.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            raise ConfigError(f"{name}={value!r}: lstmgen train has no on/off option {flag}")
        args += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return _run_command(args)


def _run_command(args: list[str]) -> Path:
    import typer

    from lstmgen.cli import app
    from lstmgen.cli.base import RAISE_ERRORS

    token = RAISE_ERRORS.set(True)
    try:
        rv = app(list(args), standalone_mode=False, prog_name="lstmgen")
    except typer.Exit as e:
        rv = e.exit_code
    except LstmgenError:
        raise
    except Exception as e:  # Click's usage errors (an unknown option, a value out of range)
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            raise ConfigError(e.format_message()) from None
        raise
    finally:
        RAISE_ERRORS.reset(token)
    if isinstance(rv, Path):
        return rv
    if rv in (130, 143):  # interrupted by Ctrl-C (the notebook's stop button) or SIGTERM: latest.npz is saved
        raise KeyboardInterrupt
    raise LstmgenError(f"lstmgen {' '.join(args)} stopped with exit code {rv}")
