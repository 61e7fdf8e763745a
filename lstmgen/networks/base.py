"""``Network``: the one interface every network kind implements, and what the kinds share.

A kind (``forward.ForwardLM``, ``cloze.Cloze``, ``jordan.Jordan``) turns a ``ModelConfig`` and its
parameters into predictions, losses and gradients, traces and steppers. ``CharLM`` holds the
parameters and delegates to its kind; training, evaluation, sampling, filling, inspect, the explorer,
gradcheck and runs call the interface and never ask which kind they hold.

The interface (params: the model's dict of named arrays; B batch, T time, V vocabulary):
    layout       param_shapes(), init_params(params, rng), state_layout(), zero_state(B), decayed(name)
    words        description (the start-up line's words after cfg.summary()), inspect_note
    the task     both_sides: whether the guess at t is for x_t from both sides (cloze) rather than x_{t+1}
    training     train_batch(stream, index, T) → (x, y); loss_and_grads(params, x, y, state, rng, grads, dstate)
    gradcheck    exact_batch(x, y): the batch whose loss reads nothing but x, y and the state
    evaluation   eval_rows(ids, streams, chunk) → (x, y); sum_losses(params, x, y, chunk, should_stop)
    reading      trace(params, ids, warmup, chunk, on_chunk) → Traced; stepper(params, B) (or a refusal);
                 fill(params, ids, masked, choose, start)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lstmgen.cells import CELLS, CellSpec
from lstmgen.errors import ConfigError
from lstmgen.networks.layers import init_cell_biases, init_uniform, stack_shapes


@dataclass
class Traced:
    """A network over one text: per layer a dict quantity → (T, H) (row t right after reading x_t),
    probs (T, V) (row t: the guess made there), the final state (None for a bidirectional model),
    and a bidirectional model's backward stack (row t after reading x_t from the right)."""

    layers: list[dict[str, np.ndarray]]
    probs: np.ndarray
    state: list | None = None
    reverse: list[dict[str, np.ndarray]] | None = None


class Network:
    """What every kind shares: one stack per key suffix in ``stacks``, of ``spec`` cells, and a
    decoder over their top states. Subclasses supply the passes."""

    stacks: tuple[str, ...] = ("",)  # key suffixes: "" the left-to-right stack, "_reverse" the other
    both_sides = False  # the guess at t is for x_t, from both sides (a cloze model), not for x_{t+1}
    description = ""  # what the start-up line adds after the model's summary
    inspect_note = ""  # what inspect prints under its gate table

    def __init__(self, cfg):
        self.cfg = cfg
        self.spec: CellSpec = CELLS[cfg.cell]  # the cell of every layer

    # ------------------------------------------------------------------ layout
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of every parameter, in a fixed order (the flat buffer's)."""
        cfg = self.cfg
        shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (cfg.vocab_size, cfg.embed)}
        for sfx in self.stacks:
            shapes.update(stack_shapes(self.spec, cfg, sfx))
        shapes["decoder.weight"] = (cfg.vocab_size, cfg.hidden * len(self.stacks))
        shapes["decoder.bias"] = (cfg.vocab_size,)
        return shapes

    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def init_params(self, params: dict, rng: np.random.Generator) -> None:
        """PyTorch's default initialisation, then the cell's own biases (``CellSpec.init_bias``)."""
        init_uniform(params, self.cfg.hidden, rng)
        for sfx in self.stacks:
            init_cell_biases(self.spec, self.cfg, params, sfx)

    def state_layout(self) -> list[tuple[tuple[str, int], ...]]:
        """Per layer, the parts of its carried state and their rows: (h, c) for the LSTM family, (h,) otherwise."""
        return [tuple((part, self.cfg.hidden) for part in self.spec.states)] * self.cfg.layers

    def zero_state(self, batch: int) -> list[tuple[np.ndarray, ...]]:
        """Per layer, a tuple of (rows, B) arrays (see ``state_layout``)."""
        dt = self.cfg.np_dtype
        return [tuple(np.zeros((n, batch), dtype=dt) for _, n in layer) for layer in self.state_layout()]

    def extra_rows(self, name: str) -> str | None:
        """For a parameter that is one of the cell's own per-unit tensors (``CellSpec.extra``: the
        peepholes), what its rows are ("ifo"); None for every other parameter."""
        return next((rows for extra, rows in self.spec.extra.items() if f".{extra}_l" in name), None)

    def decayed(self, name: str, shape: tuple[int, ...]) -> bool:
        """Whether weight decay applies: weight matrices, not biases or a cell's per-unit extras (peepholes)."""
        return len(shape) == 2 and self.extra_rows(name) is None

    # ------------------------------------------------------------------ training and evaluation
    def train_batch(self, stream, index: int, T: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index`` of the training stream: inputs x and targets y, (B, T) each."""
        return stream.get(index)

    def exact_batch(self, x: np.ndarray, y: np.ndarray):
        return x, y

    def eval_rows(self, ids: np.ndarray, streams: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets (S, n) for evaluation: ids cut into S ≤ streams equal rows (fewer when
        the text is short next to chunk), each row read from a zero state."""
        streams = _streams(ids, streams, chunk)
        per_row = (len(ids) - 1) // streams
        if streams > 1:
            return (ids[: per_row * streams].reshape(streams, per_row),
                    ids[1 : per_row * streams + 1].reshape(streams, per_row))
        return ids[None, :-1], ids[None, 1:]

    def sum_losses(self, params, x: np.ndarray, y: np.ndarray, chunk: int,
                   should_stop: Callable[[], bool] | None = None) -> tuple[float, int] | None:
        """(Σ −ln p(y | x), positions) over rows x, y (S, n), each row read from a zero state in chunks;
        None when ``should_stop`` says so. S may be 0 (a worker with no rows still asks ``should_stop``
        once per chunk, like the others)."""
        state = self.zero_state(x.shape[0]) if x.shape[0] else None
        total, n = 0.0, 0
        for s in range(0, x.shape[1], chunk):
            if should_stop is not None and should_stop():
                return None
            if state is None:
                continue
            xs, ys = np.asarray(x[:, s : s + chunk], np.int64), np.asarray(y[:, s : s + chunk], np.int64)
            loss, state = self.sum_loss(params, xs, ys, state)
            total += loss
            n += xs.size
        return total, n

    def sum_loss(self, params, x: np.ndarray, y: np.ndarray, state):
        raise NotImplementedError

    def stepper(self, params: dict, batch: int = 1):
        raise ConfigError(f"a {type(self).__name__} network cannot generate text one character at a time")


def _streams(ids: np.ndarray, streams: int, chunk: int) -> int:
    return max(1, min(streams, (len(ids) - 1) // max(1, chunk) or 1))
