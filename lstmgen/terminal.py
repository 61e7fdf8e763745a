"""The one way a string that came from a person reaches a terminal.

File names, run names, option values and excerpts of a corpus can hold anything: escape sequences
that clear the screen or set the window title (``\\x1b[2J``, ``\\x1b]0;…\\x07``), carriage returns
that overwrite a line, bidirectional overrides that reorder it, or bytes that are not UTF-8 (a file
name read with ``surrogateescape``). :func:`shown` makes each such character visible instead of
letting the terminal act on it. Every message that carries such a string passes through it.
"""

from __future__ import annotations

import os

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def shown_char(ch: str) -> str:
    """One character as a person can read it: itself when printable, else a visible code."""
    if ch == " " or ch.isprintable():
        return ch
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"U+{code:04X}"


def shown(value: object) -> str:
    """``str(value)`` (a path: its file-system name) with every control, format or unpaired
    surrogate character made visible, so that printing it cannot move the cursor, clear the screen,
    retitle the window or fail to encode."""
    text = os.fsdecode(value) if isinstance(value, os.PathLike) else str(value)
    if text.isprintable():
        return text
    return "".join(shown_char(ch) for ch in text)
