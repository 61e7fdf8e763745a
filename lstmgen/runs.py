"""Run directories as data: one summary per run, and the loss curves of its metrics.jsonl.

Reads only what it needs (a checkpoint's ``meta.json`` member, the metrics lines); never
prints. ``lstmgen runs`` and ``lstmgen plot`` render these.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstmgen.checkpoint import config_from_meta
from lstmgen.corpus import corpus_label
from lstmgen.errors import LstmgenError
from lstmgen.networks import network_for

LN2 = math.log(2)


def is_run(path: Path) -> bool:
    return path.is_dir() and ((path / "latest.npz").exists() or (path / "metrics.jsonl").exists())


def find_runs(root: Path) -> list[Path]:
    """Run directories at or below ``root`` (a run's own folders are not searched)."""
    root = Path(root)
    if not root.exists():
        raise LstmgenError(f"no such directory: {root}")
    if not root.is_dir():
        raise LstmgenError(f"not a directory: {root}")
    if is_run(root):
        return [root]
    found, stack = [], [root]
    while stack:
        d = stack.pop()
        for p in sorted(d.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                (found.append(p) if is_run(p) else stack.append(p))
    return sorted(found)


def read_meta(ckpt: Path) -> dict:
    """The ``meta.json`` document of a checkpoint, without loading its arrays."""
    try:
        if not Path(ckpt).is_file():
            raise ValueError("not a regular file")
        with np.load(ckpt, allow_pickle=False) as z:
            a = z["meta.json"]
            return json.loads(a.tobytes().decode() if a.dtype == np.uint8 else str(a))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise LstmgenError(f"{ckpt}: not a readable lstmgen checkpoint ({e})") from e


def read_metrics(run: Path) -> list[dict]:
    """metrics.jsonl's records (a torn last line, as a kill can leave, is skipped)."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():  # (missing, or a pipe that would be waited on)
        return []
    rows = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # (json's decode errors; a torn or foreign line)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


@dataclass
class RunSummary:
    run: str
    cell: str | None = None
    direction: str = "fwd"
    layers: int | None = None
    hidden: int | None = None
    model: str | None = None  # "lstm 2×256", "gru bi 1×384"
    params: int | None = None
    step: int | None = None
    epoch: int | None = None
    best_val_loss: float | None = None
    best_val_bpc: float | None = None
    chars_per_sec: float | None = None
    corpus: str | None = None
    workers: int | None = None
    modified: float | None = None  # seconds since the epoch
    problem: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "problem" or v is not None}


def summarise(run: Path) -> RunSummary:
    run = Path(run)
    s = RunSummary(run=str(run))
    ckpt = run / "latest.npz"
    metrics = read_metrics(run)
    if metrics:
        s.chars_per_sec = metrics[-1].get("chars_per_sec")
        s.step, s.epoch = metrics[-1].get("step"), metrics[-1].get("epoch")
    if not ckpt.exists():
        s.problem = "no latest.npz"
        return s
    s.modified = ckpt.stat().st_mtime
    try:
        meta = read_meta(ckpt)
        cfg = config_from_meta(meta)
        s.params = network_for(cfg).num_params()  # (refuses what cannot be built: one row's problem)
    except LstmgenError as e:
        s.problem = str(e)
        return s
    tr = meta.get("train", {})
    s.cell, s.layers, s.hidden, s.model = cfg.cell, cfg.layers, cfg.hidden, cfg.summary()
    s.direction = cfg.direction
    s.step, s.epoch = tr.get("step", s.step), tr.get("epoch", s.epoch)
    s.workers = tr.get("workers")
    best = tr.get("best_val_loss")
    if isinstance(best, int | float) and math.isfinite(best):
        s.best_val_loss, s.best_val_bpc = float(best), float(best) / LN2
    s.corpus = corpus_label(meta.get("corpus", {}))
    return s


def sort_key(s: RunSummary):
    return (s.best_val_loss is None, s.best_val_loss or 0.0, s.run)


@dataclass
class Curve:
    """One line of a chart: (x, y) points, y in bits per character."""

    label: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    kind: str = "train"  # "train" or "val"
    group: int = 0  # which run (one colour per run)


Y = {"loss": "loss (bits per character)", "grad-norm": "gradient norm before clipping (mean per logged line)"}


def curves(run: Path, x: str = "step", label: str | None = None, group: int = 0, y: str = "loss") -> list[Curve]:
    """Against ``x`` = "step" or "time" (seconds of training, summed over the run's invocations: each
    resume restarts its clock): the train and validation loss in bits/char (``y`` = "loss"), or the
    global gradient norm before clipping (``y`` = "grad-norm", one curve: metrics.jsonl's grad_norm)."""
    label = label or Path(run).name
    train, val = Curve(f"{label} train", kind="train", group=group), Curve(f"{label} val", kind="val", group=group)
    keys = (("train_loss", train, LN2), ("val_loss", val, LN2)) if y == "loss" else (("grad_norm", train, 1.0),)
    offset, last = 0.0, 0.0
    for r in read_metrics(run):
        t = r.get("elapsed_s")
        if isinstance(t, int | float):
            if t < last:  # a new invocation (resume): its clock starts again
                offset += last
            last = t
        pos = r.get("step") if x == "step" else (offset + last)
        if pos is None:
            continue
        for key, c, unit in keys:
            v = r.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                c.x.append(float(pos))
                c.y.append(v / unit)
    return [c for c in (train, val) if c.x]
