"""Setting up a run: a new one in a fresh directory, or an existing one resumed exactly (its options,
corpus, parameters, optimizer state and carried state read back and checked)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np

from lstmgen import checkpoint as ckpt_io
from lstmgen.config import ModelConfig
from lstmgen.corpus import DEFAULT_GLOB, Corpus, corpus_label, load_corpus, recorded_inputs, resolve_inputs
from lstmgen.errors import ConfigError, CorpusError, VocabError
from lstmgen.model import CharLM
from lstmgen.networks import network_for
from lstmgen.optim import Optimizer
from lstmgen.rundir import RunLock, prepare_run_dir, remove_if_unused
from lstmgen.terminal import shown
from lstmgen.text import Vocab, visible
from lstmgen.training.loop import Trainer
from lstmgen.training.options import BUDGETS, MODEL_KEYS, TrainOptions


def new_trainer(corpus_path: Path | list[Path], out: Path, opts: TrainOptions, init_from: Path | None = None,
                on_bytes: Callable[[int], None] | None = None, glob: str = DEFAULT_GLOB) -> Trainer:
    """A new run in ``out`` (created and locked; removed again if setting up fails)."""
    opts.check()
    # what can be refused before the run directory is made: missing inputs, a model of impossible shape
    resolve_inputs([Path(p) for p in (corpus_path if isinstance(corpus_path, list) else [corpus_path])], glob)
    init = ckpt_io.load(init_from) if init_from is not None else None
    if init is None:
        network_for(ModelConfig(vocab_size=2, cell=opts.cell, layers=opts.layers, hidden=opts.hidden, embed=opts.embed,
                                dropout=opts.dropout, dtype=opts.dtype, direction=opts.direction))
    made = [d for d in (out, *out.parents) if not d.exists()]  # removed again if setting up fails
    lock = prepare_run_dir(out)
    try:
        vocab = Vocab(init.meta["vocab"]) if init is not None else None
        corpus = load_corpus(corpus_path, cache_dir=out, vocab=vocab, on_bytes=on_bytes, glob=glob,
                             vocab_what="corpus (for --init-from, the corpus must use the checkpoint's vocabulary)")
        if len(corpus.vocab) < 2:
            raise CorpusError(f"corpus {corpus.path} holds only one distinct character "
                              f"({visible(corpus.vocab.chars[0])}); there is nothing to learn")
        if init is not None:
            for k in ("cell", "layers", "hidden", "embed", "direction"):
                setattr(opts, k, getattr(init.config, k))
        cfg = ModelConfig(vocab_size=len(corpus.vocab), cell=opts.cell, layers=opts.layers, hidden=opts.hidden,
                          embed=opts.embed, dropout=opts.dropout, dtype=opts.dtype, direction=opts.direction)
        model = CharLM(cfg, seed=opts.seed)
        if init is not None:
            model.load_params({k: v.astype(cfg.np_dtype) for k, v in init.params.items()})
        return Trainer(out, opts, corpus, model=model, optimizer=make_optimizer(opts, model), lock=lock)
    except BaseException:
        lock.release()
        if made:
            remove_if_unused(out)
            for d in made[1:]:  # the parents this run made (runs/), when empty
                try:
                    d.rmdir()
                except OSError:
                    break
        raise


def make_optimizer(opts: TrainOptions, model: CharLM) -> Optimizer:
    """The run's optimizer; weight decay applies to weight matrices, not biases or peepholes."""
    mask = np.zeros_like(model.flat)
    off = 0
    for name, p in model.params.items():  # views of model.flat, in order
        if model.network.decayed(name, p.shape):
            mask[off : off + p.size] = 1
        off += p.size
    return Optimizer(opts.optimizer, model.flat.size, model.cfg.np_dtype, weight_decay=opts.weight_decay,
                     decay_mask=mask)


def resume_trainer(run: Path, corpus: list[Path] | None, overrides: dict,
                   on_bytes: Callable[[int], None] | None = None, glob: str | None = None) -> Trainer:
    """Continue a run exactly: the run fixes model and data; stopping, cadences and lr may change."""
    if not run.is_dir() or not (run / "latest.npz").exists():
        raise ConfigError(f"--resume {run}: not a run directory (no latest.npz)")
    lock = RunLock(run).acquire()
    try:
        return _resume(run, corpus, overrides, lock, on_bytes, glob)
    except BaseException:
        lock.release()
        raise


def _resume(run: Path, corpus: list[Path] | None, overrides: dict, lock: RunLock,
            on_bytes: Callable[[int], None] | None, glob: str | None = None) -> Trainer:
    ck = ckpt_io.load(run / "latest.npz")
    opts = recorded_options(ck.meta)
    fixed = set(MODEL_KEYS) | {"seq_len", "batch_size", "val_frac", "val_chars", "seed", "optimizer"}
    if any(overrides.get(k) is not None for k in BUDGETS):  # a budget given anew replaces the recorded one
        for k in BUDGETS:
            setattr(opts, k, None)
    for k, v in overrides.items():
        if v is None:
            continue
        if k in fixed and v != getattr(opts, k):
            raise ConfigError(f"--{k.replace('_', '-')} cannot change when resuming "
                              f"(the run uses {getattr(opts, k)})")
        setattr(opts, k, v)
    opts.check()
    corpus = read_run_corpus(ck.meta, corpus, glob, cache_dir=run, on_bytes=on_bytes)
    return trainer_from(run, ck, opts, corpus, lock, where=run / "latest.npz")


def recorded_options(meta: dict) -> TrainOptions:
    """The training options a checkpoint recorded (keys this version does not know are ignored; a run
    from before --val-chars validated on its whole held-out tail, and goes on doing so)."""
    known = {f.name for f in fields(TrainOptions)}
    recorded = {"val_chars": 0} | meta.get("train", {})
    return TrainOptions(**{k: v for k, v in recorded.items() if k in known})


def trainer_from(run: Path, ck: ckpt_io.Checkpoint, opts: TrainOptions, corpus: Corpus, lock: RunLock | None,
                  where: Path | str) -> Trainer:
    model = CharLM(ck.config, params=ck.params)
    opt = make_optimizer(opts, model)
    try:
        opt.load_state(ck.optim)
    except ConfigError as e:
        raise ckpt_io.CheckpointError(f"{where}: {e}") from e
    return Trainer(run, opts, corpus, model=model, optimizer=opt, meta_train=ck.meta.get("train", {}),
                   state=ck.state, lock=lock)


def read_run_corpus(meta: dict, given: list[Path] | None = None, glob: str | None = None,
                    cache_dir: Path | None = None, on_bytes: Callable[[int], None] | None = None) -> Corpus:
    """A run's corpus again: the inputs given now (their sha256 must match), else the recorded
    inputs with the recorded glob, refusing a file changed, added or removed (named)."""
    c = meta["corpus"]
    recorded = recorded_inputs(c)
    inputs = given or recorded
    other = given is not None and [p.resolve() for p in given] != [p.resolve() for p in recorded]

    def different() -> CorpusError:
        return CorpusError(f"{' '.join(shown(p) for p in given)} is not the corpus this run was trained on "
                           f"({corpus_label(c)}); resume without a corpus to read {shown(recorded[0])} again, or "
                           f"start a new run on it (--init-from to begin from this run's weights)")

    try:
        corpus = load_corpus(inputs, cache_dir=cache_dir, vocab=Vocab(meta["vocab"]),
                             expect_sha=None if other else c["sha256"], on_bytes=on_bytes,
                             glob=(glob if given else None) or c.get("glob", DEFAULT_GLOB),
                             expect_files=None if given else c.get("files") or None)
    except VocabError:
        if other:
            raise different() from None
        raise
    if other and corpus.sha256 != c["sha256"]:  # the same text under another name (a moved file) is fine
        raise different()
    return corpus
