"""Worker groups for data-parallel training: rank, size and an in-place sum across workers.

Every worker runs the same training loop on its own rows of each batch (SPMD, as PyTorch's
DistributedDataParallel and Horovod do); the only coupling is ``allreduce_``, a sum of a NumPy
array across workers, after which every worker holds the same values. The model never sees a
group: ``training.collectives`` decides what to sum (gradients, losses, stop requests, the carried state for
checkpoints).

Three groups behind one interface (``rows(n)`` says which of a batch's n rows a rank computes;
``workers`` how many ranks compute):

- ``Solo``: one process; every collective is a no-op.
- ``LocalGroup``: this process (rank 0, the coordinator: it reports, writes and takes the same
  optimizer steps, but computes no rows) and N forked compute workers on one machine, with no
  extra dependency. (Measured: a process that has forked runs the same NumPy step ~7 % slower
  than its children, which run as fast as independent processes; so the parent coordinates.)
  Each allreduce copies the array into the worker's slot of an anonymous shared
  memory map, waits at a barrier, sums its own 1/N column span of every slot in rank order
  (so the result does not depend on timing), waits again and copies the sum back. The barrier
  is a star of pipes through rank 0, whose wait also watches every child's exit sentinel: a
  worker that dies (kill -9, out of memory) is noticed at the next barrier, not waited for
  forever. Children die with their parent (PR_SET_PDEATHSIG, and a parent check while waiting).
- ``MPIGroup``: the ranks of ``mpiexec -n N`` (mpi4py, optional); ``Allreduce`` in place.

For two workers a sum is a + b in every group (addition commutes exactly), so ``--workers 2``
and ``mpiexec -n 2`` compute the same numbers.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import sys
from collections.abc import Callable
from multiprocessing import connection, get_context

import numpy as np

from lstmgen.errors import LstmgenError


class WorkerLost(LstmgenError):
    """A worker process ended while the others were waiting for it."""


def row_block(n: int, size: int, rank: int) -> slice:
    """Rank's contiguous block of n rows, the blocks as equal as they can be (ranks first get less)."""
    return slice(n * rank // size, n * (rank + 1) // size)


def default_workers(batch: int) -> int:
    """One worker per core, each keeping at least 4 of the batch's rows (smaller blocks make the
    matrix products too thin to pay for the extra process)."""
    return max(1, min(available_cores(), batch // 4))


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Solo:
    """One worker: nothing to share."""

    rank, size, workers, kind = 0, 1, 1, "single process"

    def rows(self, n: int) -> slice:
        return slice(0, n)

    def allreduce_(self, a: np.ndarray) -> None:
        pass

    def close(self, timeout: float = 0.0) -> None:
        pass

    def kill(self) -> None:
        pass


SOLO = Solo()


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies (no orphans on a barrier)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # the waiting loops also check the parent


class LocalGroup:
    """Rank 0 (this process, the coordinator) and ``size − 1`` forked compute workers sharing one memory map."""

    kind = "local processes"

    @property
    def workers(self) -> int:
        return self.size - 1

    def rows(self, n: int) -> slice:
        """Rank 0 computes no rows; ranks 1 … size−1 split the n rows in contiguous blocks."""
        return slice(0, 0) if self.rank == 0 else row_block(n, self.size - 1, self.rank - 1)

    def __init__(self, size: int, max_bytes: int):
        self.size, self.rank = size, 0
        self.slot_bytes = max(8, -(-max_bytes // 64) * 64)  # each slot on its own cache lines
        self.mem = mmap.mmap(-1, self.slot_bytes * (size + 1))  # size slots, then the sum
        self.procs: list = []
        self.conns: list = []  # rank 0: one per child; a child: [its own]
        self.parent_pid = os.getpid()

    @classmethod
    def start(cls, size: int, max_bytes: int, child_main: Callable[[LocalGroup], int]) -> LocalGroup:
        """Fork ranks 1 … size−1, each running ``child_main(group)`` and exiting with its return value;
        returns rank 0's group in this process."""
        group = cls(size, max_bytes)
        ctx = get_context("fork")
        try:
            for rank in range(1, size):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=group._child, args=(rank, theirs, child_main), daemon=True,
                                name=f"lstmgen-worker-{rank}")
                p.start()
                theirs.close()
                group.procs.append(p)
                group.conns.append(mine)
        except BaseException:
            group.close()
            raise
        return group

    def _child(self, rank: int, conn, child_main: Callable[[LocalGroup], int]) -> None:
        """Body of a forked worker (runs in the child and never returns)."""
        _die_with_parent()
        if os.getppid() != self.parent_pid:  # the parent died before we could ask
            os._exit(1)
        for s in (signal.SIGINT, signal.SIGTERM):  # rank 0 decides when to stop, for everyone
            signal.signal(s, signal.SIG_IGN)
        for c in self.conns:  # the other children's pipe ends belong to rank 0
            c.close()
        self.rank, self.conns, self.procs = rank, [conn], []
        code = 1
        try:
            code = int(child_main(self) or 0)
        except WorkerLost:
            code = 1
        except BaseException as e:  # a worker never prints a traceback; rank 0 reports the loss
            if os.environ.get("LSTMGEN_DEBUG") == "1":
                import traceback

                traceback.print_exc()
            elif not isinstance(e, LstmgenError):
                print(f"lstmgen worker {rank}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    # ------------------------------------------------------------------ synchronisation
    def _barrier(self) -> None:
        if self.rank == 0:
            self._gather_arrivals()
            for c, p in zip(self.conns, self.procs):
                try:
                    c.send_bytes(b"g")
                except OSError:  # it died after arriving: its pipe is broken (not our stdout: not a quiet exit 0)
                    self._lost(p)
        else:
            conn = self.conns[0]
            try:
                conn.send_bytes(b"a")
                while not conn.poll(0.5):
                    if os.getppid() != self.parent_pid:
                        raise WorkerLost("the main lstmgen process is gone")
                conn.recv_bytes()
            except (EOFError, OSError) as e:
                raise WorkerLost("the main lstmgen process is gone") from e

    def _gather_arrivals(self) -> None:
        """Rank 0: one message from every child, or a clear error as soon as one has died."""
        waiting = dict(zip(self.conns, self.procs))
        sentinels = {p.sentinel: p for p in self.procs}
        while waiting:
            for ready in connection.wait(list(waiting) + list(sentinels), timeout=1.0):
                if ready in waiting:
                    try:
                        ready.recv_bytes()
                    except (EOFError, OSError):
                        self._lost(waiting[ready])
                    del waiting[ready]
                elif sentinels[ready] in waiting.values():
                    self._lost(sentinels[ready])

    def _lost(self, p) -> None:
        p.join(0.5)
        code = p.exitcode
        how = (f"was killed by signal {-code} ({signal.Signals(-code).name})" if code is not None and code < 0
               else f"exited with status {code}")
        raise WorkerLost(f"worker {p.name.rsplit('-', 1)[-1]} (pid {p.pid}) {how}")

    def _view(self, i: int, dtype, n: int) -> np.ndarray:
        return np.frombuffer(self.mem, dtype=dtype, count=n, offset=i * self.slot_bytes)

    def allreduce_(self, a: np.ndarray) -> None:
        """Sum ``a`` (contiguous) across the workers, in place."""
        flat = a.reshape(-1)
        n = flat.size
        if flat.nbytes > self.slot_bytes:
            raise ValueError(f"allreduce of {flat.nbytes} bytes exceeds the {self.slot_bytes}-byte slots")
        self._view(self.rank, a.dtype, n)[...] = flat
        self._barrier()  # every slot written
        span = row_block(n, self.size, self.rank)
        out = self._view(self.size, a.dtype, n)[span]
        np.copyto(out, self._view(0, a.dtype, n)[span])
        for r in range(1, self.size):  # in rank order: the same sum whatever the timing
            out += self._view(r, a.dtype, n)[span]
        self._barrier()  # every span summed
        flat[...] = self._view(self.size, a.dtype, n)

    def close(self, timeout: float = 5.0) -> None:
        """Rank 0: let the children finish (they end with the loop), then make sure they are gone."""
        if self.rank != 0:
            return
        for p in self.procs:
            p.join(timeout)
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join(1.0)
        for c in self.conns:
            c.close()
        self.procs, self.conns = [], []

    def kill(self) -> None:
        """Rank 0 after an error: the children are waiting at a barrier that will never come."""
        if self.rank == 0:
            for p in self.procs:
                if p.is_alive():
                    p.kill()
            self.close(timeout=1.0)


class MPIGroup:
    """The ranks of ``mpiexec -n N``: every collective is one in-place ``Allreduce``."""

    kind = "MPI ranks"

    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.workers = self.size
        # ranks on this host (to share its cores): from the launcher, else asked of MPI
        env = os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
        self.local_size = int(env) if env and env.isdigit() else \
            comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()

    def rows(self, n: int) -> slice:
        return row_block(n, self.size, self.rank)

    def allreduce_(self, a: np.ndarray) -> None:
        self.comm.Allreduce(self.MPI.IN_PLACE, a, op=self.MPI.SUM)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def close(self, timeout: float = 0.0) -> None:
        pass

    def kill(self, code: int = 1) -> None:
        """After an error on one rank: the others wait in a collective that will never come."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


_MPI_ENV = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_RANK", "HYDI_CONTROL_FD")


def mpi_world() -> MPIGroup | None:
    """The MPI group when this process was started by mpiexec with more than one rank, else None.

    mpi4py is imported only when an MPI launcher's environment is present, so a plain
    ``lstmgen train`` never loads an MPI library.
    """
    if not any(v in os.environ for v in _MPI_ENV):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        if int(os.environ.get("PMI_SIZE", os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) or 1) > 1:
            raise LstmgenError("started by mpiexec with several ranks, but mpi4py is not installed; "
                               "pip install 'lstmgen[mpi]'") from None
        return None
    comm = MPI.COMM_WORLD
    return MPIGroup(comm) if comm.Get_size() > 1 else None
