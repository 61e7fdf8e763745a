"""Worker groups (``lstmgen.parallel``) and what the workers agree on through them
(``lstmgen.training.collectives``), with real forked processes; whole training runs with workers
are in test_workers."""

import numpy as np
import pytest

from lstmgen.parallel import SOLO, LocalGroup, row_block
from lstmgen.training.collectives import STOPS, agree, gather_state, sum_gradients


@pytest.mark.parametrize("n, size", [(0, 3), (7, 3), (8, 2), (5, 5), (64, 7)])
def test_row_blocks_cover_every_row_once_as_evenly_as_they_can(n, size):
    blocks = [row_block(n, size, r) for r in range(size)]
    assert [i for b in blocks for i in range(n)[b]] == list(range(n))
    lengths = [b.stop - b.start for b in blocks]
    assert max(lengths) - min(lengths) <= 1


def _run(size: int, body) -> None:
    """``body(group)`` on every rank of a LocalGroup of ``size`` (rank 0 here); a rank whose body raises
    (a failed assert) exits 1, which fails the test."""

    def child(group) -> int:
        try:
            body(group)
        except BaseException:
            return 1
        return 0

    group = LocalGroup.start(size, 1 << 12, child)
    try:
        body(group)
    finally:
        procs = list(group.procs)
        group.close()
    assert [p.exitcode for p in procs] == [0] * (size - 1)


def test_allreduce_sums_every_rank_in_place():
    def body(group):
        a = np.full(5, float(group.rank + 1))
        group.allreduce_(a)
        assert a.tolist() == [6.0] * 5  # 1 + 2 + 3 on every rank
    _run(3, body)


def test_any_worker_stop_stops_all_and_rank_0s_learning_rate_is_everyones():
    def body(group):
        stop, lr = agree(group, "SIGTERM" if group.rank == 2 else None, 0.1 * (group.rank + 1))
        assert (stop, lr) == ("SIGTERM", pytest.approx(0.1))
        stop, _ = agree(group, "max-time" if group.rank == 1 else ("SIGINT" if group.rank == 2 else None), 0.0)
        assert stop == "SIGINT"  # several at once: the first in STOPS' order
        assert agree(group, None, 0.5) == (None, 0.5)
    _run(3, body)
    assert STOPS[:2] == ("SIGINT", "SIGTERM")


def test_gradients_are_weighted_by_each_workers_share_of_the_rows():
    """Rank 0 (the coordinator) has no rows; ranks 1 and 2 hold 1 and 3 of 4 rows: the mean over all rows."""
    shares = {0: 0.0, 1: 0.25, 2: 0.75}

    def body(group):
        g = np.full(3, float(group.rank))  # each worker's mean gradient over its own rows
        loss = sum_gradients(group, g, loss=float(group.rank), share=shares[group.rank])
        assert g.tolist() == pytest.approx([0.25 * 1 + 0.75 * 2] * 3) and loss == pytest.approx(1.75)
    _run(3, body)


def test_the_carried_state_is_gathered_from_each_workers_rows():
    B = 5

    def body(group):
        rows = group.rows(B)
        full = [(np.arange(2 * B, dtype=np.float64).reshape(2, B), np.ones((3, B))), (np.arange(B)[None] * 1.5,)]
        mine = [tuple(np.ascontiguousarray(a[:, rows]) for a in layer) for layer in full]
        got = gather_state(group, mine, rows, B, np.float64)
        for layer_got, layer_full in zip(got, full):
            for a, b in zip(layer_got, layer_full):
                np.testing.assert_array_equal(a, b)
    _run(3, body)


def test_one_worker_shares_nothing():
    g = np.ones(2)
    assert sum_gradients(SOLO, g, 3.0, 1.0) == 3.0 and g.tolist() == [1.0, 1.0]
    state = [(np.ones((2, 4)),)]
    assert gather_state(SOLO, state, slice(0, 4), 4, np.float64) is state


def test_an_allreduce_larger_than_the_slots_is_refused():
    group = LocalGroup(2, 64)
    with pytest.raises(ValueError, match="exceeds"):
        group.allreduce_(np.zeros(100))


def test_a_worker_that_dies_after_arriving_is_a_lost_worker_not_a_broken_pipe():
    """The coordinator's "go" to a worker killed between its arrival and the reply raises
    BrokenPipeError; it must be reported as that worker lost (exit 1), never taken for a closed
    stdout (which the CLI ends quietly with exit 0). Seen once in CI as a silent exit 0."""
    from types import SimpleNamespace

    from lstmgen.parallel import LocalGroup, WorkerLost

    class Dead:
        def send_bytes(self, _):
            raise BrokenPipeError(32, "Broken pipe")

    group = LocalGroup.__new__(LocalGroup)
    group.rank, group.conns = 0, [Dead()]
    group.procs = [SimpleNamespace(name="lstmgen-worker-1", pid=12345, exitcode=-9, join=lambda t: None)]
    group._gather_arrivals = lambda: None
    with pytest.raises(WorkerLost, match="worker 1 .*SIGKILL"):
        group._barrier()
