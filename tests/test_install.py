"""Installed like any tool: a built wheel, in a fresh virtual environment, outside the checkout,
trains on the bundled corpus with no file given."""

import subprocess
import sys
import venv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_a_built_wheel_trains_on_the_bundled_corpus_from_anywhere(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("lstmgen-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    inst = subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], capture_output=True, text=True,
                          timeout=900)
    assert inst.returncode == 0, inst.stderr

    elsewhere = tmp_path / "elsewhere"  # no checkout, no corpora/ here
    elsewhere.mkdir()
    r = subprocess.run([str(env_dir / "bin" / "lstmgen"), "train", "--max-steps", "3", "--hidden", "32",
                        "--eval-every", "3", "--out", "run"], cwd=elsewhere, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert "training on default.txt" in r.stderr and "site-packages" not in r.stderr
    with np.load(elsewhere / "run" / "latest.npz") as z:
        assert "embedding.weight" in z.files
    r = subprocess.run([str(env_dir / "bin" / "lstmgen"), "inspect", "run", "--html", "x.html", "--rows", "2"],
                       cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and (elsewhere / "x.html").stat().st_size > 10_000, r.stderr  # the page ships too
    where = subprocess.run([str(py), "-c", "import lstmgen.text as t; print(t.DEFAULT_CORPUS)"],
                           cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert "site-packages" in where.stdout and str(ROOT) not in where.stdout, where.stdout
