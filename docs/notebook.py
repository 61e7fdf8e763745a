# %% [markdown]
# # lstmgen in a notebook
#
# Train a small LSTM on the bundled structured corpus, sample from it, look at one unit's gates
# over a text with matplotlib, and open the explorer inline. Run it top to bottom: in Jupyter
# (VS Code and JupyterLab read the `# %%` cells; `jupytext --to notebook docs/notebook.py` makes an
# `.ipynb`), or as a plain script: `python docs/notebook.py`.
#
# `pip install -e ".[notebook]"` adds matplotlib (for the plot) and ipywidgets (for the progress
# bar in Jupyter). `LSTMGEN_QUICK=1` shrinks every budget to seconds (what CI runs).

# %%
import os
import sys
import tempfile
from pathlib import Path

import lstmgen

QUICK = os.environ.get("LSTMGEN_QUICK") == "1"
runs = Path(os.environ.get("LSTMGEN_RUNS") or tempfile.mkdtemp(prefix="lstmgen-notebook-"))

# %% [markdown]
# ## Train
# The command line's `lstmgen train @structured --max-time 1m --hidden 128 …`, from Python: the
# options keep their names (with `_` for `-`) and the call returns the run directory. Stop it
# with the notebook's stop button: it saves `latest.npz` first.

# %%
budget = {"max_steps": 8, "hidden": 32, "embed": 8, "batch_size": 8, "seq_len": 32, "workers": 1} if QUICK else \
    {"max_time": "1m", "hidden": 128, "embed": 16, "seq_len": 64, "lr": 5e-3}
run = lstmgen.train("@structured", out=runs / "structured", **budget)
model = lstmgen.load(run)
model  # noqa: B018 (a notebook shows the cell's last value)

# %% [markdown]
# ## Sample
# The same text `lstmgen sample RUN --prime "expr: (" --seed 0 --temperature 0.8` prints.

# %%
print(model.sample(300, prime="expr: (", temperature=0.8, seed=0))

# %% [markdown]
# ## Score a text
# Loss in nats per character, bits per character, perplexity: `lstmgen eval --json`.

# %%
model.eval('expr: (a (b c))\n"Yes," she said.\n')  # noqa: B018

# %% [markdown]
# ## One unit over a text
# `trace` returns every gate and state at every character as arrays (those of
# `lstmgen inspect --export`): `layer0.f` is the forget gate of layer 0, shape (characters, units).
# The unit with the largest variance of its cell state over this text is usually one that counts
# or remembers something — here, often how deep inside brackets the text is.

# %%
text = "expr: (a (b (c d) e) f)\nexpr: (x y)\n"
arrays = model.trace(text)
c = arrays["layer0.c"]
unit = int(c.var(axis=0).argmax())
print(f"unit {unit}: cell state from {c[:, unit].min():+.2f} to {c[:, unit].max():+.2f}")

try:
    import matplotlib

    if "ipykernel" not in sys.modules and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")  # a plain script without a screen: draw to a file only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3))
    for q, style in (("c", "-"), ("f", "--"), ("i", ":")):
        ax.plot(arrays[f"layer0.{q}"][:, unit], style, label=f"{q}[{unit}]")
    ax.set_xticks(range(len(text)), [ch if ch != "\n" else "↵" for ch in text])
    ax.legend()
    ax.set_title(f"unit {unit} of layer 0 over the text")
    fig.savefig(runs / "unit.png", dpi=100, bbox_inches="tight")
    print(f"saved {runs / 'unit.png'}")
except ImportError:
    print("(matplotlib is not installed: pip install -e '.[notebook]' to draw the plot)")

# %% [markdown]
# ## Fill in a blank
# `lstmgen fill`: a left-to-right model fills each `_` from the text on its left (a bidirectional
# model, trained with `direction="bi"`, from both sides).

# %%
print(model.fill("expr: (a (b_c))"))

# %% [markdown]
# ## The explorer, inline
# The same page `lstmgen inspect RUN --html page.html` writes: click through units, hover a
# character, select a stretch of text to rank the units that are "on" inside it.

# %%
page = model.explore(text)
page.save(runs / "explorer.html")
page  # noqa: B018 (in Jupyter: the page itself, in a frame)
