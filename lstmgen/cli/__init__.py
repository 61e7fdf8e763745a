"""The command line, one module per command; ``base`` holds the app and the one error boundary.

Importing this package registers every command on ``app`` (in this order in ``--help``);
``main`` is the console script.
"""

# isort: off
from lstmgen.cli import train  # noqa: F401
from lstmgen.cli import sample  # noqa: F401
from lstmgen.cli import fill  # noqa: F401
from lstmgen.cli import inspect  # noqa: F401
from lstmgen.cli import runs  # noqa: F401
from lstmgen.cli import gradcheck  # noqa: F401
from lstmgen.cli import memory  # noqa: F401
from lstmgen.cli import info  # noqa: F401
from lstmgen.cli.base import app, main

# isort: on

__all__ = ["app", "main"]
