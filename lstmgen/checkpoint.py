"""The checkpoint file (docs/FORMAT.md): one ``.npz``, no pickle, written atomically, validated on load.

Keys:
    embedding.weight, rnn.*_l{k}, decoder.*   parameters in PyTorch state_dict names and layouts
    optim.<name>                              optimizer state (flat vectors in parameter order, and t)
    state.l{k}.h, state.l{k}.c                the hidden state carried across training batches (H, B);
                                              Jordan: state.l0.y (V, B), the output fed back
    meta.json                                 one JSON document as a 0-d unicode array
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lstmgen.config import ModelConfig
from lstmgen.errors import CheckpointError, ConfigError, DivergenceError
from lstmgen.networks import network_for

FORMAT = "lstmgen-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    params: dict[str, np.ndarray]
    meta: dict
    optim: dict[str, np.ndarray] = field(default_factory=dict)
    state: list[tuple[np.ndarray, ...]] | None = None

    @property
    def config(self) -> ModelConfig:
        return config_from_meta(self.meta)


def config_from_meta(meta: dict) -> ModelConfig:
    """The model a checkpoint's metadata records (dtype and direction, absent from the earliest
    checkpoints: ModelConfig's defaults, the one place they are written)."""
    m = meta["model"]
    return ModelConfig(vocab_size=len(meta["vocab"]), cell=m["cell"], layers=int(m["layers"]),
                       hidden=int(m["hidden"]), embed=int(m["embed"]), dropout=float(m["dropout"]),
                       dtype=m.get("dtype", ModelConfig.dtype), direction=m.get("direction", ModelConfig.direction))


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run directory (its best.npz, else latest.npz)."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.npz", "latest.npz"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(f"no checkpoint (best.npz or latest.npz) in directory {p}")
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if not p.is_file():  # a named pipe or a device would be waited on, not read
        raise CheckpointError(f"{p} is not a regular file, so not a checkpoint")
    return p


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write atomically: temporary file in the same directory, flush + fsync, os.replace.

    Refuses non-finite parameters or optimizer state (no checkpoint ever holds them).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for name, a in ckpt.params.items():
        if not np.all(np.isfinite(a)):
            raise DivergenceError(f"refusing to save {path.name}: parameter {name} is not finite")
        arrays[name] = a
    for name, a in ckpt.optim.items():
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise DivergenceError(f"refusing to save {path.name}: optimizer state {name} is not finite")
        arrays[f"optim.{name}"] = a
    layout = network_for(config_from_meta(ckpt.meta)).state_layout() if ckpt.state else []
    for k, parts in enumerate(ckpt.state or []):
        for (part, _), a in zip(layout[k], parts):
            arrays[f"state.l{k}.{part}"] = a
    meta = {**ckpt.meta, "format": FORMAT, "format_version": FORMAT_VERSION}
    arrays["meta.json"] = np.array(json.dumps(meta, ensure_ascii=False))
    try:  # the mode the file has now (a user's chmod is kept), else any new file's (mkstemp makes 0600)
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, mode)
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: read once, put back at once
    os.umask(mask)
    return mask


def _unlink_quietly(p) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | Path) -> Checkpoint:
    """Read and validate every key, shape and dtype; any defect is one CheckpointError."""
    path = resolve(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    if magic != b"PK\x03\x04":  # np.load would call anything that is not a zip or .npy "pickled data"
        raise CheckpointError(f"{path} is not a valid checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, zlib.error, SyntaxError, tokenize.TokenError, NotImplementedError,
            RuntimeError) as e:
        # (SyntaxError / TokenError: NumPy parses each array's header as a Python literal; zipfile raises
        # NotImplementedError for a flipped compression method or flag, RuntimeError for an "encrypted" member)
        raise CheckpointError(f"{path} is not a valid checkpoint (damaged or truncated file: {e})") from e
    except ValueError as e:
        if "pickle" in str(e):
            raise CheckpointError(f"{path} holds pickled objects; refusing to load it") from e
        raise CheckpointError(f"{path} is not a valid checkpoint ({e})") from e
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    return _validate(path, arrays)


def _validate(path: Path, arrays: dict[str, np.ndarray]) -> Checkpoint:
    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a valid lstmgen checkpoint: {msg}")

    if "meta.json" not in arrays:
        raise bad("no meta.json")
    raw = arrays.pop("meta.json")
    try:
        text = raw.tobytes().decode("utf-8") if raw.dtype == np.uint8 else str(raw[()])
        meta = json.loads(text)
    except (ValueError, TypeError, IndexError) as e:
        raise bad(f"meta.json is not JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"format is {meta.get('format') if isinstance(meta, dict) else None!r}, not {FORMAT!r}")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise bad("format_version is missing")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {version}, newer than this lstmgen reads ({FORMAT_VERSION}); "
            "upgrade lstmgen"
        )
    if not isinstance(meta.get("vocab"), str) or not meta["vocab"]:
        raise bad("vocab is missing")
    if len(set(meta["vocab"])) != len(meta["vocab"]):
        raise bad("vocab repeats characters")
    try:
        cfg = config_from_meta(meta)
        network = network_for(cfg)
    except (KeyError, TypeError, ValueError) as e:
        raise bad(f"model configuration is incomplete ({e})") from e
    except ConfigError as e:
        raise bad(str(e)) from e
    params = {}
    for name, shape in network.param_shapes().items():
        if name not in arrays:
            raise bad(f"missing parameter {name}")
        a = arrays.pop(name)
        if a.shape != shape:
            raise bad(f"{name} has shape {a.shape}, expected {shape}")
        if a.dtype != cfg.np_dtype:
            raise bad(f"{name} has dtype {a.dtype}, expected {cfg.dtype}")
        if not np.all(np.isfinite(a)):
            raise bad(f"{name} holds non-finite values")
        params[name] = a
    optim = {k.removeprefix("optim."): arrays.pop(k) for k in list(arrays) if k.startswith("optim.")}
    n = network.num_params()
    for k, a in optim.items():
        if k == "t":
            if a.shape != () or a.dtype.kind not in "iu":
                raise bad("optim.t must be an integer scalar")
        elif a.shape != (n,) or a.dtype != cfg.np_dtype or not np.all(np.isfinite(a)):
            raise bad(f"optim.{k} must be a finite {cfg.dtype} vector of length {n}")
    state = None
    state_keys = [k for k in arrays if k.startswith("state.")]
    if state_keys:
        state = []
        for layer, layout in enumerate(network.state_layout()):
            parts = []
            for part, rows in layout:
                key = f"state.l{layer}.{part}"
                if key not in arrays:
                    raise bad(f"missing {key}")
                a = arrays.pop(key)
                if a.ndim != 2 or a.shape[0] != rows or a.dtype != cfg.np_dtype:
                    raise bad(f"{key} has shape {a.shape} and dtype {a.dtype}")
                parts.append(a)
            state.append(tuple(parts))
    if arrays:
        raise bad(f"unexpected keys {sorted(arrays)[:5]}")
    return Checkpoint(params=params, meta=meta, optim=optim, state=state)
