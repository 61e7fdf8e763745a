"""The one family of errors lstmgen raises. The CLI turns each into one line and an exit code."""


class LstmgenError(Exception):
    """Base class: a problem the user can fix. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(LstmgenError):
    """An option value or model configuration that makes no sense."""

    exit_code = 2


class CorpusError(LstmgenError):
    """A text file that cannot be used (missing, empty, not UTF-8, ...)."""


class VocabError(LstmgenError):
    """Text with characters the model has never seen."""


class CheckpointError(LstmgenError):
    """A file that is not a valid lstmgen checkpoint."""


class DivergenceError(LstmgenError):
    """Training produced a non-finite loss or gradient."""
