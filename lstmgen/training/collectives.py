"""The workers' agreement: what every worker of a run must hold the same after each step.

Every function here is a collective: every worker of the group calls it at the same point of the
loop, with arrays of the same shape, and all of them return the same answer. The group (``parallel``
or ``mpi``) sums arrays; these functions say what is summed.
"""

from __future__ import annotations

import numpy as np

# why a run stops, in the order they are reported when several apply at once
STOPS = ("SIGINT", "SIGTERM", "max-steps", "epochs", "max-time", "patience")


def agree(group, local_stop: str | None, lr: float) -> tuple[str | None, float]:
    """Every worker's stop request (any one stops all) and rank 0's learning rate (its clock rules the
    time budget and the schedule), the same everywhere."""
    ctrl = np.zeros(len(STOPS) + 1)
    if local_stop:
        ctrl[STOPS.index(local_stop)] = 1.0
    if group.rank == 0:
        ctrl[-1] = lr
    group.allreduce_(ctrl)
    stop = next((s for s, v in zip(STOPS, ctrl) if v > 0), None)
    return stop, float(ctrl[-1])


def sum_gradients(group, flat_g: np.ndarray, loss: float, share: float) -> float:
    """Add up the workers' gradients (in place), each weighted by its ``share`` of the batch's rows, so
    that every worker holds the gradient of the mean loss over all B·T positions; returns that loss."""
    if group.size == 1:
        return loss
    if share:
        flat_g *= flat_g.dtype.type(share)
    group.allreduce_(flat_g)
    total = np.array([loss * share])
    group.allreduce_(total)
    return float(total[0])


def gather_state(group, state, rows: slice, B: int, dtype) -> list[tuple[np.ndarray, ...]]:
    """The carried state of all B rows, from each worker's ``rows`` of it (summing zero-padded blocks)."""
    if group.size == 1:
        return state
    sizes = [a.shape[0] for layer in state for a in layer]  # each part (rows, this worker's b)
    buf = np.zeros(sum(sizes) * B, dtype=dtype)
    parts, off = [], 0
    for n in sizes:  # (n, B) views of one flat buffer: one allreduce for everything
        parts.append(buf[off : off + n * B].reshape(n, B))
        off += n * B
    for view, a in zip(parts, (a for layer in state for a in layer)):
        view[:, rows] = a
    group.allreduce_(buf)
    it = iter(parts)
    return [tuple(next(it) for _ in layer) for layer in state]
