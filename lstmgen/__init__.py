"""lstmgen: character-level recurrent language models in NumPy (LSTM, GRU, RNN, peephole, CIFG,
Jordan, bidirectional cloze models).

From Python: ``lstmgen.train(...)`` trains a model and returns its run directory,
``lstmgen.load(path)`` gives a :class:`Model` with ``sample``, ``eval``, ``trace``, ``fill`` and
``explore``; errors are :class:`LstmgenError`. See the README's "From Python" section.
"""

__version__ = "0.1.0"

from lstmgen.api import Explorer, Model, load, train  # noqa: E402
from lstmgen.errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    CorpusError,
    DivergenceError,
    LstmgenError,
    VocabError,
)
from lstmgen.model import CELL_TYPES, CharLM, ModelConfig  # noqa: E402

__all__ = ["CELL_TYPES", "CharLM", "CheckpointError", "ConfigError", "CorpusError", "DivergenceError", "Explorer",
           "LstmgenError", "Model", "ModelConfig", "VocabError", "__version__", "load", "train"]
