"""The ``maild`` command line.

Every subcommand takes ``--config PATH``. Exit codes: 0 done, 1 a fault while
doing it (reported on stderr, as a JSON record under ``--log-format json``), 2
bad configuration or usage. One module per command group: ``dryrun``
(check-config, triage, takein, render), ``daemon`` (run, db, quarantine),
``operators`` (queue, ticket, stats, digest, status), ``outbox`` (outbox list,
release), ``channels`` (web, pin, ticket open), ``pec`` (pec inspect), ``wordmodel``
(word-model train, check).

The daemon's wiring and the database layer are imported by the handlers that
use them, never while the parser is built: a spawned triage worker (a
replacement) re-imports the main module, and ``maild triage`` or
``check-config`` need none of it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from maild.cli.channels import CHANNEL_COMMANDS
from maild.cli.daemon import DAEMON_COMMANDS
from maild.cli.dryrun import DRY_RUN_COMMANDS
from maild.cli.operators import OPERATOR_COMMANDS
from maild.cli.outbox import OUTBOX_COMMANDS
from maild.cli.output import DEFAULT_CONFIG, EXIT_CONFIG, EXIT_FAULT, fail
from maild.cli.pec import PEC_COMMANDS
from maild.cli.wordmodel import WORD_MODEL_COMMANDS
from maild.errors import ConfigError, MaildError
from maild.logs import configure
from maild.settings import Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure(args.log_format, args.log_level)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return fail(f"configuration error in {args.config}: {exc}", EXIT_CONFIG)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except ConfigError as exc:
        return fail(f"configuration error: {exc}", EXIT_CONFIG)
    except MaildError as exc:
        return fail(f"{type(exc).__name__}: {exc}", EXIT_FAULT)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maild", description="First-line e-mail help desk daemon.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG, help=f"TOML configuration (default {DEFAULT_CONFIG})")
    common.add_argument("--log-format", choices=("text", "json"), default="text")
    common.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRY:
        register(commands, common)
    return parser


Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]
_REGISTRY: tuple[Register, ...] = (
    *DRY_RUN_COMMANDS, *DAEMON_COMMANDS, *OPERATOR_COMMANDS, *OUTBOX_COMMANDS, *CHANNEL_COMMANDS, *PEC_COMMANDS,
    *WORD_MODEL_COMMANDS,
)
