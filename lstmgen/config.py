"""``ModelConfig``: the shape of a model, everything needed to rebuild it from its parameters.

Which network a configuration builds (a left-to-right language model, a bidirectional cloze model,
a Jordan network) and whether it can be built is ``lstmgen.networks``' decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lstmgen.cells import CELLS
from lstmgen.errors import ConfigError

# jordan: a network (``networks.jordan``) of Elman layers whose layer 0 reads the model's previous output
CELL_TYPES = (*CELLS, "jordan")
DIRECTIONS = {"fwd": "", "bi": " bi"}  # "fwd": left to right; "bi": bidirectional cloze (its summary word)
MAX_LAYERS = 256
MAX_PARAMS = 1 << 31  # 8 GiB of float32 parameters, before gradients and optimizer moments
DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a model: everything needed to rebuild it from its parameters."""

    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    embed: int = 64
    dropout: float = 0.0
    dtype: str = "float32"
    direction: str = "fwd"  # "fwd": left-to-right language model; "bi": bidirectional cloze model

    def __post_init__(self):
        if self.cell not in CELL_TYPES:
            raise ConfigError(f"unknown cell {self.cell!r}; choose one of {', '.join(CELL_TYPES)}")
        for name in ("vocab_size", "layers", "hidden", "embed"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be {' or '.join(DIRECTIONS)}, got {self.direction!r}")
        if int(self.layers) > MAX_LAYERS:
            raise ConfigError(f"{self.layers} layers is more than lstmgen stacks (at most {MAX_LAYERS})")

    def summary(self) -> str:
        """The model in a few words: "lstm 1×384", "gru bi 2×256"."""
        return f"{self.cell}{DIRECTIONS[self.direction]} {self.layers}×{self.hidden}"

    @property
    def np_dtype(self):
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        return asdict(self)
