"""Operator commands of the ``maild`` CLI (queue, tickets, stats, digest, status)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]

OPERATOR_COMMANDS: tuple[Register, ...] = ()
