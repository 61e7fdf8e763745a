"""A training corpus as encoded ids, with memory that does not grow with the file.

The file is streamed twice in chunks, never held whole: pass 1 checks the UTF-8, counts the
characters, collects the vocabulary and hashes the bytes; pass 2 encodes into the smallest
unsigned integer type that holds the vocabulary (uint8 / uint16 / uint32). Large corpora are
encoded into a ``.npy`` file beside the run, named by the corpus's sha256, and read from it a
batch at a time (``pread``), so the training process's memory stays flat in the corpus size. Resuming a
run reuses the cache when the corpus still has the same hash.

Decoding a chunk: bytes → str (strict UTF-8) → UTF-32 code points as a NumPy array → ids by a
lookup table over code points; all vectorised, so encoding runs at hundreds of MB/s.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmgen.errors import CorpusError
from lstmgen.text import Vocab, check_file

CHUNK = 1 << 22  # 4 MiB of bytes per read (about 40 MiB of transient arrays)
MMAP_ABOVE = 1 << 25  # corpora above 32 MiB are encoded to a cache file and read from disk
MAX_CODEPOINT = 0x10FFFF


@dataclass
class Corpus:
    path: Path
    sha256: str
    n_chars: int
    vocab: Vocab
    ids: np.ndarray | DiskIds  # (N,) unsigned ids, in memory or read from the cache file on demand


class DiskIds:
    """A 1-D ``.npy`` array of ids read slice by slice with ``pread``: nothing is mapped or kept, so
    the process's memory does not grow with the corpus (the OS page cache does the caching)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
        if len(shape) != 1 or fortran:
            raise ValueError(f"{path} is not a 1-D array")
        self.dtype = np.dtype(dtype)
        self._file = open(self.path, "rb")  # noqa: SIM115 -- lives as long as the object
        self.start, self.n, self.offset = 0, int(shape[0]), offset

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, step = key.indices(self.n)
        if step != 1:
            raise IndexError("DiskIds supports contiguous slices only")
        count = max(0, stop - start)
        size = self.dtype.itemsize
        data = os.pread(self._file.fileno(), count * size, self.offset + (self.start + start) * size)
        return np.frombuffer(data, dtype=self.dtype, count=count)

    def sub(self, start: int, stop: int) -> DiskIds:
        """The ids [start, stop) as another on-disk view (no reading)."""
        view = object.__new__(DiskIds)
        view.__dict__.update(self.__dict__)
        view.start, view.n = self.start + start, max(0, stop - start)
        return view


def _chunks(path: Path, what: str, on_bytes: Callable[[int], None] | None):
    """Yield (decoded text, raw bytes) per chunk; strict UTF-8 with the failing byte's offset."""
    dec = codecs.getincrementaldecoder("utf-8")(errors="strict")
    fed, first = 0, True
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed in finally; errors mapped below
    except OSError as e:
        raise CorpusError(f"cannot read {what} file {path}: {e.strerror}") from e
    try:
        while True:
            try:
                raw = f.read(CHUNK)
            except OSError as e:
                raise CorpusError(f"cannot read {what} file {path}: {e.strerror}") from e
            pending = len(dec.getstate()[0])
            try:
                text = dec.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                offset = fed - pending + e.start
                raise CorpusError(f"{what} file {path} is not valid UTF-8: byte 0x{e.object[e.start]:02x} at "
                                  f"offset {offset}") from e
            fed += len(raw)
            if first and text:
                text, first = text.removeprefix("\ufeff"), False
            if on_bytes is not None and raw:
                on_bytes(len(raw))
            yield text, raw
            if not raw:
                return
    finally:
        f.close()


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def id_dtype(vocab_size: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    raise CorpusError("vocabulary too large")  # cannot happen: Unicode has fewer code points


def scan(path: Path, what: str = "corpus",
         on_bytes: Callable[[int], None] | None = None) -> tuple[str, int, str]:
    """Pass 1: (the sorted vocabulary as one string, number of characters, sha256 of the bytes)."""
    seen = np.zeros(MAX_CODEPOINT + 1, dtype=bool)
    h = hashlib.sha256()
    n = 0
    for text, raw in _chunks(path, what, on_bytes):
        h.update(raw)
        if text:
            cp = _codepoints(text)
            seen[cp] = True
            n += len(cp)
    chars = "".join(map(chr, np.flatnonzero(seen)))
    return chars, n, h.hexdigest()


def encode_file(path: Path, vocab: Vocab, n_chars: int, out, what: str = "corpus",
                on_bytes: Callable[[int], None] | None = None) -> None:
    """Pass 2: the ids of every character into ``out``: an (N,) array, or a binary file object to
    append them to; unknown characters are named."""
    dt = id_dtype(len(vocab))
    lut = np.full(MAX_CODEPOINT + 1, -1, dtype=np.int32)
    lut[[ord(c) for c in vocab.chars]] = np.arange(len(vocab))
    pos = 0
    for text, _ in _chunks(path, what, on_bytes):
        if not text:
            continue
        ids = lut[_codepoints(text)]
        if ids.min() < 0:
            vocab.encode(text, what)  # raises, naming the characters
        if isinstance(out, np.ndarray):
            out[pos : pos + len(ids)] = ids
        else:
            out.write(ids.astype(dt).tobytes())
        pos += len(ids)
    if pos != n_chars:
        raise CorpusError(f"{what} file {path} changed while it was read")


def load_corpus(path: Path, cache_dir: Path | None = None, vocab: Vocab | None = None,
                expect_sha: str | None = None, on_bytes: Callable[[int], None] | None = None,
                vocab_what: str = "corpus") -> Corpus:
    """Scan and encode a corpus. ``vocab`` fixes the vocabulary (fine-tuning, resuming);
    ``expect_sha`` refuses a changed file; ``cache_dir`` receives the encoded ids of corpora
    above 32 MiB (reused when present), which are then read from disk batch by batch."""
    path = check_file(path, "corpus")
    chars, n, sha = scan(path, "corpus", on_bytes)
    if expect_sha is not None and sha != expect_sha:
        raise CorpusError(f"corpus {path} has changed since the run started (sha256 differs)")
    if n == 0:
        raise CorpusError(f"corpus file is empty: {path}")
    if vocab is None:
        vocab = Vocab(chars)
    elif not set(chars) <= set(vocab.chars):
        vocab.encode(chars, vocab_what)  # raises, naming the characters the model does not know
    dt = id_dtype(len(vocab))
    if cache_dir is None or path.stat().st_size <= MMAP_ABOVE:
        ids = np.empty(n, dtype=dt)
        encode_file(path, vocab, n, ids, on_bytes=on_bytes)
        return Corpus(path, sha, n, vocab, ids)
    cache = Path(cache_dir) / f"ids-{sha[:16]}-v{len(vocab)}.npy"
    if cache.exists():
        try:
            ids = DiskIds(cache)
            if ids.shape == (n,) and ids.dtype == dt:
                return Corpus(path, sha, n, vocab, ids)
        except (OSError, ValueError):
            pass
    tmp = cache.with_name(f".{cache.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dt),
                                                     "fortran_order": False, "shape": (n,)})
            encode_file(path, vocab, n, f, on_bytes=on_bytes)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(cache)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CorpusError(f"cannot write the encoded corpus {cache}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Corpus(path, sha, n, vocab, DiskIds(cache))
