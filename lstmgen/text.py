"""Text in and out: reading corpora, the vocabulary, train/validation split, batch streams.

Text is read as UTF-8 with a leading BOM removed and newlines untranslated, everywhere.
"""

from __future__ import annotations

import errno
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from lstmgen.errors import CorpusError, VocabError
from lstmgen.terminal import shown_char


def bundled_corpus(name: str) -> Path:
    """A corpus shipped with lstmgen (package ``lstmgen.corpora``, the checkout's ``corpora/``),
    found wherever lstmgen is installed: a wheel, pipx, an editable checkout."""
    try:
        found = Path(str(resources.files("lstmgen.corpora") / name))
        if found.is_file():
            return found
    except (ModuleNotFoundError, TypeError, OSError):
        pass
    return Path(__file__).resolve().parents[1] / "corpora" / name  # a bare checkout on sys.path


DEFAULT_CORPUS = bundled_corpus("default.txt")
BUNDLED = ("default", "structured")  # the corpora shipped in lstmgen.corpora, named @default and @structured


def named_corpus(arg: str | Path) -> Path:
    """A corpus argument as a path: ``@NAME`` names a corpus shipped with lstmgen (``@default``,
    ``@structured``) unless a file of that name exists; anything else is a path as given."""
    p = Path(arg)
    name = str(arg)
    if not name.startswith("@") or p.exists():
        return p
    if name[1:] not in BUNDLED:
        raise CorpusError(f"no bundled corpus named {name}: lstmgen ships "
                          + ", ".join(f"@{k}" for k in BUNDLED))
    return bundled_corpus(name[1:] + ".txt")


def check_file(path: str | Path, what: str = "corpus") -> Path:
    """The path, if it names an existing file; else a CorpusError saying what it is instead."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CorpusError(f"{what} path is a loop of symbolic links: {p}") from e
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise CorpusError(f"{what} file not found: {p}") from e
        raise CorpusError(f"cannot read {what} file {p}: {e.strerror or e}") from e
    if stat.S_ISDIR(mode):
        raise CorpusError(f"{what} path is a directory, not a text file: {p}")
    if not stat.S_ISREG(mode):  # read twice (a scan, then encoding): a pipe or device would hang or differ
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
        raise CorpusError(f"{what} path is {kind}, not a regular text file: {p} (save the text to a file first)")
    return p


def read_text(path: str | Path, what: str = "corpus") -> str:
    """The file's text: strict UTF-8, BOM stripped, newlines as they are."""
    p = check_file(path, what)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read {what} file {p}: {e.strerror}") from e
    return decode_bytes(data, str(p), what)


def decode_bytes(data: bytes, name: str = "<bytes>", what: str = "corpus") -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{what} file {name} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}"
        ) from e
    return text.removeprefix("\ufeff")


def visible(ch: str) -> str:
    """A character as a person can read it in an error message (a space as ' ')."""
    return "' '" if ch == " " else shown_char(ch)


@dataclass(frozen=True)
class Vocab:
    """The characters of a corpus, sorted by code point; id = position."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> Vocab:
        return cls("".join(sorted(set(text))))

    @property
    def start_id(self) -> int:
        """What a model reads before a text that has no prime: a newline (texts begin after one), else
        the first character of the vocabulary."""
        return self.index.get("\n", 0)

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str, what: str = "text") -> np.ndarray:
        """(N,) int64 ids; characters outside the vocabulary are an error naming them."""
        idx = self.index
        unknown = sorted({c for c in set(text) if c not in idx})
        if unknown:
            shown = ", ".join(visible(c) for c in unknown[:20])
            more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
            raise VocabError(f"{what} has characters the model does not know: {shown}{more}")
        return np.fromiter((idx[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def split(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """The corpus tail (val_frac of it, at least 2 characters when val_frac > 0) is validation."""
    if val_frac <= 0:
        return ids, np.zeros(0, dtype=np.int64)
    n_val = max(2, int(round(len(ids) * val_frac)))
    if len(ids) - n_val < 2:
        raise CorpusError(
            f"corpus of {len(ids)} characters is too small to hold out {val_frac:.0%} for validation"
        )
    cut = len(ids) - n_val
    if hasattr(ids, "sub"):  # ids on disk: the training part stays there, the held-out tail is read
        return ids.sub(0, cut), np.asarray(ids[cut:])
    return ids[:cut], ids[cut:]


def fit_batch(n_train: int, batch: int, seq_len: int) -> tuple[int, int, list[str]]:
    """Shrink (B, T) so that one epoch holds at least one batch; return warnings for the user."""
    warnings = []
    usable = n_train - 1
    if usable < 1:
        raise CorpusError("corpus is too small: it needs at least 2 characters of training text")
    B, T = batch, seq_len
    while B * T > usable and (B > 1 or T > 1):
        if B > 1 and (B >= T or T <= 8):
            B = max(1, B // 2)
        else:
            T = max(1, T // 2)
    if (B, T) != (batch, seq_len):
        warnings.append(
            f"corpus is small ({n_train} training characters): using batch size {B} and sequence "
            f"length {T} instead of {batch} and {seq_len}"
        )
    return B, T, warnings


class BatchStream:
    """B parallel streams over a corpus: row b of batch k+1 continues row b of batch k.

    The training ids are cut into B equal rows (torch-rnn's layout), so carrying the hidden
    state from one batch to the next is correct. An epoch is ``batches_per_epoch`` batches;
    the position (epoch, batch) is all that resuming needs. ``ids`` is anything that returns
    (n,) arrays for contiguous slices: an array, or ids read from disk on demand.
    """

    def __init__(self, ids, batch: int, seq_len: int):
        self.ids, self.B, self.T = ids, batch, seq_len
        self.per_row = (len(ids) - 1) // batch
        self.batches_per_epoch = self.per_row // seq_len
        if self.batches_per_epoch < 1:
            raise CorpusError("corpus is too small for one batch")

    def get_with_right(self, k: int, extra: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch k's inputs x (B, T) and up to ``extra`` characters after each row's chunk (B, W), W the
        same for every row (fewer near the end of the text)."""
        s, T = k * self.T, self.T
        W = max(0, min(extra, len(self.ids) - ((self.B - 1) * self.per_row + s + T)))
        xr = np.empty((self.B, T + W), dtype=np.int64)
        for b in range(self.B):
            off = b * self.per_row + s
            xr[b] = self.ids[off : off + T + W]
        return xr[:, :T], xr[:, T:]

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch k of an epoch: (x, y), each (B, T), y the next characters of x."""
        s, T = k * self.T, self.T
        xy = np.empty((self.B, T + 1), dtype=np.int64)  # (B, T + 1)
        for b in range(self.B):
            off = b * self.per_row + s
            xy[b] = self.ids[off : off + T + 1]
        return xy[:, :-1], xy[:, 1:]
