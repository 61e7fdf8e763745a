"""Training a run, in its parts:

    options      TrainOptions: every option, its default and its check; what a run fixes for its life
    loop         Trainer: the training loop, checkpoints and metrics of one run (one worker's share of it)
    collectives  what the workers agree on after each step: stops, the learning rate, gradients, state
    evaluation   the held-out loss, and whether a loss says the run diverged
    setup        a new run, or an existing one resumed exactly
    workers      starting the workers: forked processes or MPI ranks

The run directory itself (its lock, its files) is ``rundir``'s; the model's math, ``networks``'.
"""

from __future__ import annotations

from lstmgen.training.collectives import STOPS
from lstmgen.training.evaluation import divergence, divergence_limit, evaluate_ids
from lstmgen.training.loop import Progress, Span, Summary, Trainer
from lstmgen.training.options import BUDGETS, MODEL_KEYS, TrainOptions, suggested_lr
from lstmgen.training.setup import make_optimizer, new_trainer, read_run_corpus, resume_trainer
from lstmgen.training.workers import blueprint, follow, join_world, start_workers

__all__ = ["BUDGETS", "MODEL_KEYS", "STOPS", "Progress", "Span", "Summary", "TrainOptions", "Trainer", "blueprint",
           "divergence", "divergence_limit", "evaluate_ids", "follow", "join_world", "make_optimizer", "new_trainer",
           "read_run_corpus", "resume_trainer", "start_workers", "suggested_lr"]
