"""Strings that came from a person reach the terminal with their control characters made visible:
no escape sequence in a file, run or option name can clear the screen or retitle the window."""

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstmgen.cli import app
from lstmgen.synthetic import prose
from lstmgen.terminal import shown

runner = CliRunner()
RAW = ("\x1b", "\x07", "\x9b", "\r", "\u202e")  # ESC, BEL, CSI, carriage return, right-to-left override


def assert_inert(out: str) -> None:
    assert not any(c in out for c in RAW), repr(out)


@pytest.mark.parametrize("raw, want", [
    ("plain name.txt", "plain name.txt"),
    ("nope\x1b[2J", "nopeU+001B[2J"),
    ("a\x1b]0;PWNED\x07.txt", "aU+001B]0;PWNEDU+0007.txt"),
    ("two\nlines\r", "two\\nlines\\r"),
    ("tab\there", "tab\\there"),
    ("rtl\u202etxt.exe", "rtlU+202Etxt.exe"),
    ("x\u2028y", "xU+2028y"),
    ("日本語 ok", "日本語 ok"),
    (os.fsdecode(b"bad\xff.txt"), "bad\\xff.txt"),
])
def test_shown_makes_every_control_character_visible(raw, want):
    assert shown(raw) == want
    assert shown(Path(raw)) == want
    shown(raw).encode("utf-8")  # a name that is not UTF-8 can still be printed


def test_a_checkpoint_name_with_an_escape_sequence_is_shown_not_obeyed():
    r = runner.invoke(app, ["sample", "nope\x1b[2J"])
    assert r.exit_code == 1
    assert_inert(r.output)
    assert "nopeU+001B[2J" in r.output


def test_a_corpus_name_with_a_title_sequence_is_shown_not_obeyed(tmp_path):
    corpus = tmp_path / "a\x1b]0;PWNED\x07.txt"
    corpus.write_text(prose(3000, seed=2), encoding="utf-8")
    r = runner.invoke(app, ["train", str(corpus), "--out", str(tmp_path / "run\x1b[2J"), "--hidden", "8",
                            "--embed", "4", "--batch-size", "4", "--seq-len", "8", "--max-steps", "2",
                            "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert_inert(r.stderr)
    assert "aU+001B]0;PWNEDU+0007.txt" in r.stderr and "runU+001B[2J" in r.stderr
    for cmd in (["runs", str(tmp_path)], ["inspect", str(tmp_path / "run\x1b[2J"), "--rows", "3"],
                ["plot", str(tmp_path / "run\x1b[2J")], ["eval", str(tmp_path / "run\x1b[2J"), str(corpus)]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 0, (cmd, r.output)
        assert_inert(r.output)


def test_a_missing_file_named_with_control_characters_is_one_visible_line(tmp_path):
    r = runner.invoke(app, ["train", str(tmp_path / "x\x1b[31m\x07.txt"), "--max-steps", "1"])
    assert r.exit_code in (1, 2)
    assert_inert(r.output)
    assert len([line for line in r.output.splitlines() if line.strip()]) == 1
