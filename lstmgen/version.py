"""The version of lstmgen (the wheel's, the one checkpoints record and ``lstmgen info`` reports)."""

__version__ = "0.1.0"
