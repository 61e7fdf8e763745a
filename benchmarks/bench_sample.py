"""Batch-1 generation speed, lstmgen vs PyTorch eager, side by side in one process.

Both generate from the same weights (V = 65): lstmgen's ``generate`` (the one-step API plus
temperature / top-k / top-p sampling) against the obvious PyTorch loop — ``rnn(emb(x), state)``,
``softmax``, ``multinomial`` — under ``torch.no_grad()``. Blocks alternate; figures are medians.
The decoder of the random initialisation is scaled by --sharpen so that the next-character
distribution is peaked like a trained model's (the mean top-1 probability is printed); the
"filter cost" column is lstmgen's slowdown against its own temperature-1 row.

    python benchmarks/bench_sample.py --configs a b --blocks 5 --chars 2000
    python benchmarks/bench_sample.py --batch 32       # N samples as one batch against batch 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import blas_env  # before NumPy: the CPU's own BLAS kernel, as on a user's machine
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lstmgen.generate import generate, generate_many  # noqa: E402
from lstmgen.model import CharLM, ModelConfig  # noqa: E402
from lstmgen.text import Vocab  # noqa: E402

CONFIGS = {"default": ("lstm", 1, 384, 64), "a": ("lstm", 1, 128, 64), "b": ("lstm", 2, 256, 64)}
VOCAB = Vocab("".join(chr(c) for c in range(32, 32 + 64)) + "\n")  # 65 characters


def ours_block(model, n, **kw):
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in generate(model, VOCAB, n, prime="A", rng=rng, **kw):
        pass
    return n / (time.perf_counter() - t0)


def sharpened_model(name: str, sharpen: float) -> CharLM:
    """A random model of config ``name`` whose decoder is scaled so its guesses are peaked like a trained one's."""
    cell, L, H, E = CONFIGS[name]
    model = CharLM(ModelConfig(vocab_size=len(VOCAB), cell=cell, layers=L, hidden=H, embed=E))
    model.params["decoder.weight"] *= sharpen
    model.params["decoder.bias"] *= sharpen
    return model


def many_block(model, n, rows, **kw):
    """Total chars/s of ``rows`` samples of n characters generated as one batch."""
    t0 = time.perf_counter()
    for _ in generate_many(model, VOCAB, n, rows, prime="A", seed=0, **kw):
        pass
    return n * rows / (time.perf_counter() - t0)


def batch_main(args):
    """--batch N: N samples as one batch (``lstmgen sample --num-samples N``) against batch 1."""
    print(f"numpy {np.__version__}, {args.blocks} blocks × {args.chars} chars per sample, {args.batch} samples")
    print(f"{'config':7} {'variant':28} {'batch 1 c/s':>12} {f'batch {args.batch} c/s':>13} {'gain':>6}")
    for name in args.configs:
        model = sharpened_model(name, args.sharpen)
        for label, kw in {"temperature 1": {}, "temperature 0.8, top-k 10": {"temperature": 0.8, "top_k": 10},
                          "greedy": {"temperature": 0.0}}.items():
            ours_block(model, 100, **kw)
            many_block(model, 20, args.batch, **kw)
            one, many = [], []
            for _ in range(args.blocks):
                one.append(ours_block(model, args.chars, **kw))
                many.append(many_block(model, args.chars // 4, args.batch, **kw))
            gain = statistics.median(m / o for m, o in zip(many, one))
            print(f"{name:7} {label:28} {statistics.median(one):12.0f} {statistics.median(many):13.0f} "
                  f"{gain:6.1f}", flush=True)


def torch_block(torch, mods, n, temperature=1.0):
    emb, rnn, dec = mods
    x = torch.tensor([[33]])
    state = None
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(n):
            out, state = rnn(emb(x), state)
            p = torch.softmax(dec(out[0, -1]) / temperature, dim=-1)
            x = torch.multinomial(p, 1).view(1, 1)
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["a", "b"], choices=list(CONFIGS))
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--chars", type=int, default=2000)
    ap.add_argument("--sharpen", type=float, default=60.0, help="decoder scale (1: untrained, flat; 60: top-1 ≈ 0.8)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    ap.add_argument("--batch", type=int, default=None, help="compare N samples as one batch with batch 1")
    args = ap.parse_args()
    print(blas_env.describe(), flush=True)
    if args.batch:
        from lstmgen.threads import set_threads

        set_threads(args.threads)
        return batch_main(args)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print("PyTorch is not installed: printing lstmgen's figures only.", file=sys.stderr)
    print(f"numpy {np.__version__}, torch {torch.__version__ if torch else None}, threads {args.threads}, "
          f"{args.blocks} blocks × {args.chars} chars")
    print(f"{'config':7} {'variant':28} {'lstmgen c/s':>12} {'torch c/s':>10} {'ratio':>7} {'filter cost':>12}")
    for name in args.configs:
        cell, L, H, E = CONFIGS[name]
        model = sharpened_model(name, args.sharpen)
        text = "".join(generate(model, VOCAB, 400, prime="A", rng=np.random.default_rng(1)))
        logits, _ = model.network.logits(model.params, VOCAB.encode(text)[None], model.zero_state(1))
        p = np.exp(logits[0] - logits[0].max(-1, keepdims=True))
        print(f"config {name}: mean top-1 probability of the next character {np.mean(p.max(-1) / p.sum(-1)):.2f}")
        mods = None
        if torch:
            emb, rnn, dec = torch.nn.Embedding(65, E), torch.nn.LSTM(E, H, num_layers=L, batch_first=True), \
                torch.nn.Linear(H, 65)
            sd = {k: torch.from_numpy(v.copy()) for k, v in model.params.items()}
            emb.weight.data, dec.weight.data, dec.bias.data = sd["embedding.weight"], sd["decoder.weight"], \
                sd["decoder.bias"]
            rnn.load_state_dict({k.removeprefix("rnn."): v for k, v in sd.items() if k.startswith("rnn.")})
            mods = (emb, rnn, dec)
        variants = {"temperature 1": {}, "temperature 0.8, top-k 10": {"temperature": 0.8, "top_k": 10},
                    "temperature 0.8, top-p 0.9": {"temperature": 0.8, "top_p": 0.9}}
        base = None
        for label, kw in variants.items():
            ours_block(model, 100, **kw)
            o, t, r = [], [], []
            for _ in range(args.blocks):
                o.append(ours_block(model, args.chars, **kw))
                if torch:
                    t.append(torch_block(torch, mods, args.chars))
                    r.append(o[-1] / t[-1])
            tc = f"{statistics.median(t):10.0f}" if t else f"{'-':>10}"
            rc = f"{statistics.median(r):7.2f}" if r else f"{'-':>7}"
            base = base if kw else statistics.median(o)
            cost = f"{100 * (base / statistics.median(o) - 1):+11.1f}%" if kw else f"{'':>12}"
            print(f"{name:7} {label:28} {statistics.median(o):12.0f} {tc} {rc} {cost}", flush=True)


if __name__ == "__main__":
    main()
