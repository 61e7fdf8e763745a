"""Several corpus files and directories: reading order, newline ends, hidden files, the glob,
the checkpoint's record, and --resume refusing a changed, added or removed file by name."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lstmgen.cli import app
from lstmgen.corpus import load_corpus
from lstmgen.errors import CorpusError

runner = CliRunner()
SMALL = ["--hidden", "16", "--embed", "8", "--batch-size", "2", "--seq-len", "8", "--eval-every", "2",
         "--max-steps", "2", "--workers", "1"]


@pytest.fixture
def tree(tmp_path) -> Path:
    (tmp_path / "a.txt").write_text("alpha one\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("beta two", encoding="utf-8")  # no final newline: one is added
    poems = tmp_path / "poems"
    (poems / "sub").mkdir(parents=True)
    (poems / "z.txt").write_text("zeta\n", encoding="utf-8")
    (poems / "m.txt").write_text("\ufeffmu mu", encoding="utf-8")  # BOM removed
    (poems / "sub" / "c.txt").write_text("gamma sub\n", encoding="utf-8")
    (poems / "notes.md").write_text("not read by default\n", encoding="utf-8")
    (poems / ".hidden.txt").write_text("hidden\n", encoding="utf-8")
    (poems / ".git").mkdir()
    (poems / ".git" / "x.txt").write_text("hidden folder\n", encoding="utf-8")
    return tmp_path


def text_of(corpus) -> str:
    return corpus.vocab.decode(np.asarray(corpus.ids[0 : corpus.n_chars]))


def test_files_then_directories_in_order_each_ending_with_a_newline(tree):
    c = load_corpus([tree / "a.txt", tree / "b.txt", tree / "poems"])
    assert text_of(c) == "alpha one\nbeta two\nmu mu\ngamma sub\nzeta\n"  # m, sub/c, z: sorted paths
    assert [Path(f["path"]).name for f in c.files] == ["a.txt", "b.txt", "m.txt", "c.txt", "z.txt"]
    assert sum(f["chars"] for f in c.files) == c.n_chars
    assert load_corpus([tree / "poems"], glob="*.md").n_chars == len("not read by default\n")


def test_one_file_reads_as_before(tree):
    c = load_corpus(tree / "b.txt")
    assert text_of(c) == "beta two" and c.files[0]["sha256"] == c.sha256


def test_a_directory_without_matches_and_a_bad_file_are_one_clear_error(tree):
    with pytest.raises(CorpusError, match=r"has no files matching '\*\.rst'"):
        load_corpus([tree / "poems"], glob="*.rst")
    (tree / "poems" / "bad.txt").write_bytes(b"ok\n\xff\xfe")
    with pytest.raises(CorpusError, match=r"bad\.txt is not valid UTF-8: byte 0xff at offset 3"):
        load_corpus([tree / "a.txt", tree / "poems"])


def test_train_records_the_inputs_and_resume_refuses_changes_by_name(tree):
    out = tree / "run"
    r = runner.invoke(app, ["train", str(tree / "a.txt"), str(tree / "poems"), "--out", str(out), *SMALL])
    assert r.exit_code == 0, r.output
    with np.load(out / "latest.npz") as z:
        c = json.loads(str(z["meta.json"]))["corpus"]
    assert c["inputs"] == [str((tree / "a.txt").resolve()), str((tree / "poems").resolve())]
    assert c["glob"] == "*.txt" and c["path"] == str((tree / "a.txt").resolve()) and len(c["files"]) == 4
    assert c["chars"] == len("alpha one\nmu mu\ngamma sub\nzeta\n")

    def resume():
        return runner.invoke(app, ["train", "--resume", str(out), "--max-steps", "3"])

    r = resume()
    assert r.exit_code == 0, r.output
    (tree / "poems" / "z.txt").write_text("zeta!\n", encoding="utf-8")
    r = resume()
    assert r.exit_code == 1 and "z.txt has changed" in r.stderr
    (tree / "poems" / "z.txt").write_text("zeta\n", encoding="utf-8")
    (tree / "poems" / "new.txt").write_text("new\n", encoding="utf-8")
    r = resume()
    assert r.exit_code == 1 and "new.txt was added" in r.stderr
    (tree / "poems" / "new.txt").unlink()
    (tree / "poems" / "m.txt").unlink()
    r = resume()
    assert r.exit_code == 1 and "m.txt was removed" in r.stderr and "Traceback" not in r.output
