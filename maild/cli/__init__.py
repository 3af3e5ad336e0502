"""The ``maild`` command line: one module per command group."""

from maild.cli.main import main

__all__ = ["main"]
