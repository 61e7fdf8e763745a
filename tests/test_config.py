"""``ModelConfig`` (``lstmgen.config``): a model's shape, checked, and its summary; whether it can be
built is its network's decision (test_jordan, test_structure)."""

import pytest

from lstmgen.config import CELL_TYPES, MAX_LAYERS, MAX_PARAMS, ModelConfig
from lstmgen.errors import ConfigError
from lstmgen.model import CharLM


@pytest.mark.parametrize("field, value, needle", [
    ("cell", "lstn", "unknown cell 'lstn'"), ("layers", 0, "layers must be at least 1"),
    ("dropout", 1.0, "dropout must be in [0, 1)"), ("dtype", "float16", "float32 or float64"),
    ("direction", "both", "direction must be fwd or bi"), ("layers", MAX_LAYERS + 1, "at most 256"),
])
def test_a_bad_shape_is_one_clear_error(field, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        ModelConfig(vocab_size=5, **{field: value})


def test_the_summary_names_cell_direction_and_size():
    assert ModelConfig(vocab_size=5, cell="gru", layers=2, hidden=256, direction="bi").summary() == "gru bi 2×256"
    assert ModelConfig(vocab_size=5, hidden=384, layers=1).summary() == "lstm 1×384"
    assert set(CELL_TYPES) == {"lstm", "peephole", "cifg", "gru", "rnn", "jordan"}


def test_a_model_too_large_to_hold_is_refused_before_any_allocation():
    cfg = ModelConfig(vocab_size=5, hidden=1 << 16, layers=2)  # a shape; the network refuses to build it
    with pytest.raises(ConfigError, match=f"at most {MAX_PARAMS:,}"):
        CharLM(cfg)
