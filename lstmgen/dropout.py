"""Dropout randomness that depends only on (seed, step, layer, global stream row).

Each row of a batch draws its masks from its own counter-based stream (Philox, keyed by the seed
and the row's global index, its counter set by the step and the draw): the same row gets the same
mask whether the batch runs in one process or is split into row blocks across workers, and
resuming needs no generator state at all (the step says where every stream is).
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1


class RowStreams:
    """Stands in for a ``numpy.random.Generator`` in the networks' forward passes
    (``networks.layers.dropout_mask``): ``random(shape, dtype)``.

    ``shape`` is (..., b) with the batch rows last (the model's (H, T, B) layout); column j
    belongs to global row ``row0 + j``. Call ``at(step)`` before each step's forward.
    """

    def __init__(self, seed: int, row0: int = 0):
        self.seed, self.row0 = int(seed) & _MASK64, int(row0)
        self.step, self.draw = 0, 0

    def at(self, step: int) -> RowStreams:
        self.step, self.draw = int(step), 0
        return self

    def random(self, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
        *lead, b = shape
        rows = np.empty((b, *lead), dtype=dtype)  # (b, ...): one contiguous block per row
        counter = np.array([0, 0, self.draw, self.step], dtype=np.uint64)
        for j in range(b):
            bits = np.random.Philox(key=np.array([self.seed, self.row0 + j], dtype=np.uint64), counter=counter)
            rows[j] = np.random.Generator(bits).random(tuple(lead), dtype=dtype)
        self.draw += 1
        return np.ascontiguousarray(np.moveaxis(rows, 0, -1))  # (..., b)
