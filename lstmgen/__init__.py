"""lstmgen: character-level recurrent language models in NumPy (LSTM, GRU, RNN, peephole, CIFG,
Jordan, bidirectional cloze models).

From Python: ``lstmgen.train(...)`` trains a model and returns its run directory,
``lstmgen.load(path)`` gives a :class:`Model` with ``sample``, ``eval``, ``trace``, ``fill`` and
``explore``; errors are :class:`LstmgenError`. See the README's "From Python" section.
"""

from lstmgen.api import Explorer, Model, load, train
from lstmgen.errors import (
    CheckpointError,
    ConfigError,
    CorpusError,
    DivergenceError,
    LstmgenError,
    VocabError,
)
from lstmgen.model import CELL_TYPES, CharLM, ModelConfig
from lstmgen.version import __version__

__all__ = ["CELL_TYPES", "CharLM", "CheckpointError", "ConfigError", "CorpusError", "DivergenceError", "Explorer",
           "LstmgenError", "Model", "ModelConfig", "VocabError", "__version__", "load", "train"]
