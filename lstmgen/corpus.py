"""A training corpus as encoded ids, with memory that does not grow with the file.

A corpus is one file, or several files and directories read in order as one text (a
directory's files matching a glob, recursively, sorted, hidden ones skipped; with several files
each file's text ends with a newline, one added where missing). The files are streamed twice
in chunks, never held whole: pass 1 checks the UTF-8, counts the
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
import functools
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


DEFAULT_GLOB = "*.txt"


@dataclass
class Corpus:
    path: Path  # the first input
    sha256: str  # one file: of its bytes; several: over every file's name and sha256
    n_chars: int
    vocab: Vocab
    ids: np.ndarray | DiskIds  # (N,) unsigned ids, in memory or read from the cache file on demand
    inputs: list[Path] | None = None  # as given, resolved
    glob: str = DEFAULT_GLOB
    files: list[dict] | None = None  # [{"path", "sha256", "chars"}] in reading order

    def meta(self) -> dict:
        """The checkpoint's ``corpus`` record."""
        return {"name": self.path.name, "path": str(self.path.resolve()), "sha256": self.sha256,
                "chars": self.n_chars, "inputs": [str(p) for p in self.inputs or [self.path.resolve()]],
                "glob": self.glob, "files": self.files or []}


def recorded_inputs(record: dict) -> list[Path]:
    """The inputs a checkpoint's ``corpus`` record names (older checkpoints: only its ``path``)."""
    return [Path(p) for p in record.get("inputs") or ([record["path"]] if record.get("path") else [])]


def corpus_label(record: dict) -> str:
    """A checkpoint's corpus in a few words, naming every input: ``a.txt``, ``poems/`` (a directory),
    ``a.txt + b.txt``, ``a.txt + 3 more``."""
    names = [p.name + ("/" if p.is_dir() else "") for p in recorded_inputs(record)]
    if not names:
        return record.get("name") or "?"
    if len(names) <= 2:
        return " + ".join(names)
    return f"{names[0]} + {len(names) - 1} more"


def held_out_text(record: dict, val_frac: float, n_chars: int) -> tuple[str, int, str] | None:
    """Up to ``n_chars`` of a run's corpus where validation begins (from the first line start within
    500 characters), read from the files its checkpoint ``record`` names, joined as training joined
    them; the corpus's start when nothing was held out. Returns (text, offset in the corpus, the
    name of the file it begins in), or None when the corpus is not at hand. Files are read from the
    last one back, only as far as the held-out tail reaches when the recorded size is known."""
    inputs = recorded_inputs(record)
    if not inputs:
        return None

    def tail_size(total: int) -> int:
        return max(2, int(round(total * val_frac))) if val_frac > 0 else total

    recorded = record.get("chars") if isinstance(record.get("chars"), int) else None
    try:
        found = resolve_inputs(inputs, record.get("glob") or DEFAULT_GLOB)
        several = len(found) > 1 or inputs[0].is_dir()
        parts: list[tuple[str, Path]] = []
        for path, _ in reversed(found):  # from the end, until the held-out tail is covered
            parts.insert(0, ("".join(t for t, _ in _texts([path], several, "corpus", None)), path))
            if recorded is not None and sum(len(t) for t, _ in parts) >= tail_size(recorded):
                break
    except CorpusError:
        return None
    joined = "".join(t for t, _ in parts)
    total = len(joined) if len(parts) == len(found) else recorded  # (the files as they are now)
    start = max(0, len(joined) - tail_size(total))
    nl = joined.find("\n", start, start + 500)
    start = nl + 1 if val_frac > 0 and nl >= 0 and nl + 1 < len(joined) else start
    at, where = 0, parts[0][1]
    for text, path in parts:  # the file the shown text begins in
        if at + len(text) > start:
            where = path
            break
        at += len(text)
    return joined[start : start + n_chars], total - len(joined) + start, where.name


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def resolve_inputs(inputs: list[Path], glob: str = DEFAULT_GLOB) -> list[tuple[Path, str]]:
    """The files to read, in order, each with the name it is hashed under: a file as given (its
    name), then each directory's files matching ``glob`` (recursively, sorted, hidden files and
    folders skipped; named by their path inside the directory)."""
    files = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            found = sorted(f for f in p.rglob(glob) if f.is_file() and not _hidden(f.relative_to(p)))
            if not found:
                raise CorpusError(f"corpus directory {p} has no files matching {glob!r} (hidden files are skipped; "
                                  "choose others with --glob)")
            files += [(f, f.relative_to(p).as_posix()) for f in found]
        else:
            files.append((check_file(p, "corpus"), p.name))
    return files


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


def _texts(files: list[Path], newline_ends: bool, what: str, on_bytes, per_file: Callable | None = None):
    """Yield (text, raw bytes) chunks of the files in order; with ``newline_ends`` a file whose
    text does not end with a newline gets one. ``per_file(path, sha256, chars)`` after each file."""
    for path in files:
        h, n, last = hashlib.sha256(), 0, ""
        for text, raw in _chunks(path, what, on_bytes):
            h.update(raw)
            if text:
                n, last = n + len(text), text[-1]
                yield text, raw
        if newline_ends and n and last != "\n":
            n += 1
            yield "\n", b""
        if per_file is not None:
            per_file(path, h.hexdigest(), n)


def scan(files: Path | list[Path], what: str = "corpus", on_bytes: Callable[[int], None] | None = None,
         newline_ends: bool = False, names: list[str] | None = None) -> tuple[str, int, str, list[dict]]:
    """Pass 1: (the sorted vocabulary as one string, number of characters, sha256, per-file records).

    One file: the sha256 of its bytes. Several: of every file's name and sha256, in order."""
    files = [files] if isinstance(files, Path) else list(files)
    seen = np.zeros(MAX_CODEPOINT + 1, dtype=bool)
    whole = hashlib.sha256()
    records: list[dict] = []
    n = 0
    for text, raw in _texts(files, newline_ends, what, on_bytes,
                            lambda p, sha, k: records.append({"path": str(p.resolve()), "sha256": sha, "chars": k})):
        if len(files) == 1:
            whole.update(raw)
        cp = _codepoints(text)
        seen[cp] = True
        n += len(cp)
    if len(files) > 1:
        for name, r in zip(names or [p.name for p in files], records):
            whole.update(os.fsencode(name) + f"\0{r['sha256']}\n".encode())  # (a name may not be UTF-8)
    chars = "".join(map(chr, np.flatnonzero(seen)))
    return chars, n, whole.hexdigest(), records


def encode_file(path: Path | list[Path], vocab: Vocab, n_chars: int, out, what: str = "corpus",
                on_bytes: Callable[[int], None] | None = None, newline_ends: bool = False) -> None:
    """Pass 2: the ids of every character into ``out``: an (N,) array, or a binary file object to
    append them to; unknown characters are named."""
    files = [path] if isinstance(path, Path) else list(path)
    dt = id_dtype(len(vocab))
    lut = np.full(MAX_CODEPOINT + 1, -1, dtype=np.int32)
    lut[[ord(c) for c in vocab.chars]] = np.arange(len(vocab))
    pos = 0
    for text, _ in _texts(files, newline_ends, what, on_bytes):
        ids = lut[_codepoints(text)]
        if ids.min() < 0:
            vocab.encode(text, what)  # raises, naming the characters
        if isinstance(out, np.ndarray):
            out[pos : pos + len(ids)] = ids
        else:
            out.write(ids.astype(dt).tobytes())
        pos += len(ids)
    if pos != n_chars:
        raise CorpusError(f"{what} file {files[0] if len(files) == 1 else ''} changed while it was read")


def _compare_files(found: list[Path], expect: list[dict]) -> None:
    """Refuse a file added, removed or (by sha256, checked after scanning) changed since the run began."""
    now = [str(p.resolve()) for p in found]
    before = [r["path"] for r in expect]
    for p in before:
        if p not in now:
            raise CorpusError(f"corpus file {p} was removed since the run started")
    for p in now:
        if p not in before:
            raise CorpusError(f"corpus file {p} was added since the run started (pass the corpus explicitly "
                              "to train on what is there now)")


def load_corpus(path: Path | list[Path], cache_dir: Path | None = None, vocab: Vocab | None = None,
                expect_sha: str | None = None, on_bytes: Callable[[int], None] | None = None,
                vocab_what: str = "corpus", glob: str = DEFAULT_GLOB,
                expect_files: list[dict] | None = None) -> Corpus:
    """Scan and encode a corpus: one file, or several files and directories (``glob`` picks a
    directory's files). ``vocab`` fixes the vocabulary (fine-tuning, resuming); ``expect_sha``
    refuses a changed corpus, ``expect_files`` names the file that changed, came or went;
    ``cache_dir`` receives the encoded ids of corpora above 32 MiB (reused when present),
    which are then read from disk batch by batch."""
    inputs = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
    found = resolve_inputs(inputs, glob)
    files, names = [f for f, _ in found], [name for _, name in found]
    several = len(files) > 1 or inputs[0].is_dir()
    if expect_files:
        _compare_files(files, expect_files)
    chars, n, sha, records = scan(files, "corpus", on_bytes, newline_ends=several, names=names)
    if expect_files:
        for r, e in zip(records, expect_files):
            if r["sha256"] != e["sha256"]:
                raise CorpusError(f"corpus file {r['path']} has changed since the run started (sha256 differs)")
    if expect_sha is not None and sha != expect_sha:
        what = inputs[0] if len(inputs) == 1 else "(" + ", ".join(map(str, inputs)) + ")"
        raise CorpusError(f"corpus {what} has changed since the run started (sha256 differs)")
    if n == 0:
        raise CorpusError(f"corpus file is empty: {inputs[0]}" if not several
                          else f"the corpus files hold no text: {', '.join(map(str, inputs))}")
    path = files[0] if not inputs[0].is_dir() else inputs[0]
    extra = {"inputs": [p.resolve() for p in inputs], "glob": glob, "files": records}
    encode = functools.partial(encode_file, files, newline_ends=several, on_bytes=on_bytes)
    if vocab is None:
        vocab = Vocab(chars)
    elif not set(chars) <= set(vocab.chars):
        vocab.encode(chars, vocab_what)  # raises, naming the characters the model does not know
    dt = id_dtype(len(vocab))
    if cache_dir is None or sum(f.stat().st_size for f in files) <= MMAP_ABOVE:
        ids = np.empty(n, dtype=dt)
        encode(vocab, n, ids)
        return Corpus(path, sha, n, vocab, ids, **extra)
    cache = Path(cache_dir) / f"ids-{sha[:16]}-v{len(vocab)}.npy"
    if cache.exists():
        try:
            ids = DiskIds(cache)
            if ids.shape == (n,) and ids.dtype == dt:
                return Corpus(path, sha, n, vocab, ids, **extra)
        except (OSError, ValueError):
            pass
    tmp = cache.with_name(f".{cache.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dt),
                                                     "fortran_order": False, "shape": (n,)})
            encode(vocab, n, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(cache)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CorpusError(f"cannot write the encoded corpus {cache}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Corpus(path, sha, n, vocab, DiskIds(cache), **extra)
