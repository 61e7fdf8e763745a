"""Network kinds: each a type behind one interface (``base.Network``), chosen here from a configuration.

    base      the interface, and what every kind shares (layout, initialisation, evaluation rows)
    layers    the layer stack below the kinds: input projection, stacked cells forward and backward
    losses    the softmax and the losses
    forward   ForwardLM: left to right, p(x_{t+1} | x_≤t)
    stepper   one-step generation for a stack of cells (ForwardLM's)
    cloze     Cloze: both sides, p(x_t | x_<t, x_>t)
    jordan    Jordan: Elman layers, layer 0 reading the previous output y
"""

from __future__ import annotations

from lstmgen.config import MAX_PARAMS
from lstmgen.errors import ConfigError
from lstmgen.networks.base import Network, Traced
from lstmgen.networks.cloze import Cloze
from lstmgen.networks.forward import ForwardLM
from lstmgen.networks.jordan import Jordan

KINDS = {"fwd": ForwardLM, "bi": Cloze}  # by direction; a network kind that is not a cell's: by its cell name
CELL_KINDS = {"jordan": Jordan}


def network_for(cfg) -> Network:
    """The network a configuration describes, refused when it cannot be built (too large, or a
    combination of cell and direction that does not exist)."""
    net = CELL_KINDS.get(cfg.cell, KINDS[cfg.direction])(cfg)
    n = net.num_params()
    if n > MAX_PARAMS:
        raise ConfigError(f"a model of {n:,} parameters ({n * 4 / 2**30:,.0f} GiB in float32) is more than lstmgen "
                          f"holds (at most {MAX_PARAMS:,}); choose a smaller --hidden, --embed or --layers")
    return net


__all__ = ["Cloze", "ForwardLM", "Jordan", "KINDS", "Network", "Traced", "network_for"]
