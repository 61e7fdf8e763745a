"""``CharLM``: a model's configuration and parameters, delegating the math to its network kind.

The parameters are views into one contiguous buffer (``CharLM.flat``), and so are the gradients, so
that clipping and the optimizer run as a few vector operations over the whole model. What the
network computes — losses and gradients, evaluation, traces, one-step generation, filling — is its
kind's (``lstmgen.networks``): the same calls whatever the kind.
"""

from __future__ import annotations

import numpy as np

from lstmgen.config import CELL_TYPES, ModelConfig
from lstmgen.errors import ConfigError
from lstmgen.networks import Network, Traced, network_for
from lstmgen.networks.layers import flat_views

__all__ = ["CELL_TYPES", "CharLM", "ModelConfig"]


class CharLM:
    """A character model: configuration plus parameters (views of one flat buffer) and its network."""

    def __init__(self, cfg: ModelConfig, seed: int | None = 0, params: dict | None = None):
        self.cfg = cfg
        self.network: Network = network_for(cfg)
        self.shapes = self.network.param_shapes()
        self.flat, self.params = flat_views(self.shapes, cfg.np_dtype)
        if params is None:
            self.network.init_params(self.params, np.random.default_rng(seed))
        else:
            self.load_params(params)

    def load_params(self, params: dict) -> None:
        """Copy named arrays (PyTorch layout) in; every name and shape must match."""
        if set(params) != set(self.shapes):
            missing = sorted(set(self.shapes) - set(params))
            extra = sorted(set(params) - set(self.shapes))
            raise ConfigError(f"parameter names do not match the model: missing {missing}, extra {extra}")
        for name, shape in self.shapes.items():
            if tuple(params[name].shape) != shape:
                raise ConfigError(f"{name} has shape {tuple(params[name].shape)}, expected {shape}")
            self.params[name][...] = params[name]

    @property
    def num_params(self) -> int:
        return int(self.flat.size)

    def zero_state(self, batch: int = 1):
        return self.network.zero_state(batch)

    def new_grads(self) -> tuple[np.ndarray, dict]:
        return flat_views(self.shapes, self.cfg.np_dtype)

    def loss_and_grads(self, x, y, state, rng=None, grads=None, dstate=None):
        """Mean cross-entropy of a batch, its gradients, the final state and dL/dstate0.

        x (B, T) int ids; y (B, ·) what the kind reads with them (``Network.train_batch``): the next
        characters for a left-to-right model, the characters after the chunk for a cloze model.
        ``grads`` is a dict from ``new_grads`` to fill.
        """
        if grads is None:
            _, grads = self.new_grads()
        loss, new_state, dstate0 = self.network.loss_and_grads(self.params, x, y, state, rng, grads, dstate)
        return loss, grads, new_state, dstate0

    def sum_losses(self, x, y, chunk: int = 256, should_stop=None):
        """(Σ −ln p, positions) over evaluation rows x, y (``Network.eval_rows``), each from a zero state."""
        return self.network.sum_losses(self.params, x, y, chunk, should_stop)

    def trace(self, ids, warmup=(), chunk: int | None = 2048, on_chunk=None) -> Traced:
        """Read one text ids (T,) (after ``warmup``, not recorded) from a zero state and report every gate
        and state per layer and step (``Traced``: per layer quantity → (T, H), probs (T, V))."""
        return self.network.trace(self.params, ids, warmup, chunk, on_chunk)

    def stepper(self, batch: int = 1):
        """One-step generation over ``batch`` rows (a refusal, for a model that cannot generate)."""
        return self.network.stepper(self.params, batch)
