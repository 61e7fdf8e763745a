"""Starting a run's workers: forked local processes, or the ranks of an MPI job (``blueprint`` /
``follow``: rank 0's run sent to the other ranks). The loop they run is ``loop.Trainer.run``."""

from __future__ import annotations

from pathlib import Path

from lstmgen import checkpoint as ckpt_io
from lstmgen.parallel import SOLO, LocalGroup, available_cores, default_workers
from lstmgen.threads import after_fork, set_threads
from lstmgen.training.loop import Trainer
from lstmgen.training.setup import read_run_corpus, recorded_options, trainer_from


def start_workers(trainer: Trainer, threads: int | None = None, world=None):
    """Make this process rank 0 of the run's workers and return their group.

    With N > 1 local workers this process coordinates: it forks N compute workers, reports,
    writes and keeps its own copy of the parameters in step, but computes no rows.

    Under mpiexec (``world``, an MPIGroup) the ranks are the workers: rank 0 sends the others
    the run (``blueprint``); each uses ``threads`` BLAS threads (default: cores ÷ ranks on this host).

    The count N is ``--workers`` (a resumed run: its recorded count), else one per core with at
    least 4 rows each, never more than the batch's rows. The N workers are forked from this
    process after the run is set up, so they start with the same corpus, model, optimizer and
    position; each runs ``Trainer.run`` on its rows with ``threads`` BLAS threads (default:
    cores ÷ workers) and ends with the loop. ``set_threads`` happens here, before the fork.
    """
    if world is not None:
        _set_rank_threads(world, threads)
        world.bcast(blueprint(trainer))
        trainer.use_group(world)
        return world
    n = max(1, min(trainer.opts.workers or default_workers(trainer.B), trainer.B))
    per_worker = threads or max(1, available_cores() // n)
    set_threads(per_worker)
    if n == 1:  # the trainer is already the one worker (SOLO)
        return SOLO

    def worker(group) -> int:
        after_fork(per_worker)
        trainer.use_group(group)
        trainer.run()
        return 0

    group = LocalGroup.start(n + 1, trainer.collective_bytes(), worker)
    trainer.use_group(group)
    return group


def join_world(bp: dict, world, threads: int | None = None) -> Trainer:
    """An MPI rank other than 0: its Trainer for rank 0's run, as a worker of ``world``."""
    trainer = follow(bp)
    _set_rank_threads(world, threads)
    trainer.use_group(world)
    return trainer


def _set_rank_threads(world, threads: int | None) -> None:
    """An MPI rank's BLAS threads: as given, else this host's cores shared by its ranks."""
    set_threads(threads or max(1, available_cores() // world.local_size))


def blueprint(trainer: Trainer) -> dict:
    """What an MPI rank needs to join rank 0's run: the run as a checkpoint (sent, never written)."""
    ck = trainer.checkpoint(trainer.full_state())
    return {"run_dir": str(trainer.run_dir), "params": dict(ck.params), "meta": ck.meta, "optim": ck.optim,
            "state": ck.state}


def follow(bp: dict) -> Trainer:
    """An MPI rank other than 0: the same run as rank 0's, from its blueprint. It reads the corpus
    from the same path on its own host (which must hold the same file) and writes nothing."""
    ck = ckpt_io.Checkpoint(params=bp["params"], meta=bp["meta"], optim=bp["optim"], state=bp["state"])
    corpus = read_run_corpus(ck.meta)
    return trainer_from(Path(bp["run_dir"]), ck, recorded_options(ck.meta), corpus, None, where="rank 0's run")
