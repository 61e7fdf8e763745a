"""lstmgen: character-level recurrent language models in NumPy (LSTM, GRU, RNN, peephole, CIFG)."""

__version__ = "0.1.0"

from lstmgen.errors import LstmgenError  # noqa: E402
from lstmgen.model import CELL_TYPES, CharLM, ModelConfig  # noqa: E402

__all__ = ["CELL_TYPES", "CharLM", "LstmgenError", "ModelConfig", "__version__"]
