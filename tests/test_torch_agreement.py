"""Same weights → same logits, loss and gradients as PyTorch (float64, rtol 1e-7).

Skipped only when torch is not installed; CI installs torch==2.13.0 so that these run.
"""

import numpy as np
import pytest

from lstmgen.model import CharLM, ModelConfig
from lstmgen.networks.layers import lookup
from lstmgen.optim import Optimizer, clip_grad_norm_

torch = pytest.importorskip("torch")
torch.set_default_dtype(torch.float64)

B, T, E, H, V, L = 3, 7, 6, 8, 11, 2
# layer 0 is a table lookup when V ≤ B·T/2, else an embedding GEMM: both paths are compared
VOCABS = {"lookup": 9, "gemm": V}
TORCH_RNN = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


class TorchCharLM(torch.nn.Module):
    def __init__(self, cell, V=V):
        super().__init__()
        self.embedding = torch.nn.Embedding(V, E)
        self.rnn = TORCH_RNN[cell](E, H, num_layers=L, batch_first=True)
        self.decoder = torch.nn.Linear(H, V)

    def forward(self, x, state):
        out, new_state = self.rnn(self.embedding(x), state)
        return self.decoder(out), new_state


def _pair(cell, V=V):
    cfg = ModelConfig(vocab_size=V, cell=cell, layers=L, hidden=H, embed=E, dtype="float64")
    ours = CharLM(cfg, seed=7)
    ours.flat += np.random.default_rng(1).normal(0, 0.2, ours.flat.shape)
    ref = TorchCharLM(cell, V)
    # the checkpoint contract: our names and layouts load straight into PyTorch's modules
    ref.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.params.items()}, strict=True)
    return ours, ref


@pytest.mark.parametrize("path", list(VOCABS))
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_logits_loss_and_gradients_agree_with_torch(cell, path):
    V = VOCABS[path]
    ours, ref = _pair(cell, V)
    assert lookup(ours.cfg.vocab_size, B * T) == (path == "lookup")
    rng = np.random.default_rng(3)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    state = [tuple(rng.normal(0, 0.5, (H, B)) for _ in s) for s in ours.zero_state(B)]

    # torch state: (L, B, H) per part
    n_parts = len(state[0])
    parts = [torch.tensor(np.stack([s[j].T for s in state]), requires_grad=True) for j in range(n_parts)]
    t_state = tuple(parts) if cell == "lstm" else parts[0]
    t_logits, t_final = ref(torch.from_numpy(x), t_state)
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, V), torch.from_numpy(y).reshape(-1))
    t_loss.backward()

    logits, final = ours.network.logits(ours.params, x, state)
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-7, atol=1e-12)
    t_final = t_final if cell == "lstm" else (t_final,)
    for k in range(L):
        for j in range(len(t_final)):
            np.testing.assert_allclose(final[k][j], t_final[j][k].detach().numpy().T, rtol=1e-7, atol=1e-12)

    loss, grads, _, dstate0 = ours.loss_and_grads(x, y, state)
    assert loss == pytest.approx(t_loss.item(), rel=1e-10)
    named = dict(ref.named_parameters())
    assert set(named) == set(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(g, named[name].grad.numpy(), rtol=1e-7, atol=1e-12, err_msg=name)
    for k in range(L):
        for j, part in enumerate(parts):
            np.testing.assert_allclose(dstate0[k][j], part.grad[k].numpy().T, rtol=1e-7, atol=1e-12)


TORCH_OPT = {
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, weight_decay=0.01),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05, weight_decay=0.01),
}
WD = {"adam": 0.01, "adamw": 0.1, "sgd": 0.01, "rmsprop": 0.01, "adagrad": 0.01}
LR = {"adam": 0.01, "adamw": 0.01, "sgd": 0.05, "rmsprop": 0.01, "adagrad": 0.05}


@pytest.mark.parametrize("name", list(TORCH_OPT))
def test_optimizers_and_clipping_agree_with_torch(name):
    """Five steps of training with clipping give the same weights as torch.optim."""
    ours, ref = _pair("lstm")
    opt = Optimizer(name, ours.flat.size, np.float64, weight_decay=WD[name])
    t_opt = TORCH_OPT[name](list(ref.parameters()))
    rng = np.random.default_rng(9)
    for _ in range(5):
        x = rng.integers(0, V, (B, T))
        y = rng.integers(0, V, (B, T))
        flat_g, grads = ours.new_grads()
        ours.loss_and_grads(x, y, ours.zero_state(B), grads=grads)
        norm = clip_grad_norm_(flat_g, 0.5)
        opt.step(ours.flat, flat_g, LR[name])

        t_opt.zero_grad()
        t_logits, _ = ref(torch.from_numpy(x), None)
        torch.nn.functional.cross_entropy(t_logits.reshape(-1, V), torch.from_numpy(y).reshape(-1)).backward()
        t_norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        t_opt.step()
        assert norm == pytest.approx(t_norm.item(), rel=1e-9)
    for pname, p in ref.named_parameters():
        want = p.detach().numpy()
        np.testing.assert_allclose(ours.params[pname], want, rtol=1e-7, atol=1e-10, err_msg=pname)
