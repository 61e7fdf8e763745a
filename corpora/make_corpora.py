"""Regenerate the bundled corpora (deterministic): python corpora/make_corpora.py"""

from pathlib import Path

from lstmgen.synthetic import prose, structured

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    (HERE / "default.txt").write_text(prose(400_000, seed=0), encoding="utf-8", newline="\n")
    (HERE / "structured.txt").write_text(structured(200_000, seed=0), encoding="utf-8", newline="\n")
    for name in ("default.txt", "structured.txt"):
        print(name, (HERE / name).stat().st_size, "bytes")
