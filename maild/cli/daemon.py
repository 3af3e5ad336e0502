"""Commands that run or look after the daemon: run, db upgrade, quarantine.

The daemon's wiring (and with it the database layer, the IMAP, SMTP and
scheduler libraries) is imported by the handlers that use it: ``maild triage``
and ``check-config`` need none of it.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from maild.cli.output import EXIT_CONFIG, fail, print_table, redact
from maild.errors import ConfigError
from maild.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
"""The example requests ``make run`` seeds the embedded Maildir with."""


# --------------------------------------------------------------------------
# run, db upgrade, quarantine


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("run", parents=[common], help="run the daemon in the foreground")
    cmd.add_argument("--once", action="store_true", help="drain the mailbox and the outbox, then exit")
    cmd.add_argument("--seed-examples", action="store_true",
                     help="first deliver the examples/*.eml no earlier run recorded into a Maildir mailbox "
                          "(used by `make run`)")
    cmd.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from maild.daemon.wiring import build_daemon  # noqa: PLC0415 - see the module docstring

    if args.seed_examples:
        _seed_examples(settings)
    daemon = build_daemon(settings)
    # What is built so far (modules, rules, templates) lives as long as the process: moved out of
    # the cyclic collector's reach, it is not traversed by every full collection nor at exit, and a
    # forked child does not touch, and so copy, its pages doing so.
    gc.freeze()

    def stop(signum: int, _frame: object) -> None:
        print(f"maild: {signal.Signals(signum).name} received, finishing the message in hand", file=sys.stderr)
        daemon.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return daemon.run(once=args.once)


def _seed_examples(settings: Settings) -> None:
    """Deliver the examples no earlier run recorded, and say so of the others."""
    from maild.daemon.examples import seed_examples  # noqa: PLC0415 - see the module docstring
    from maild.daemon.wiring import open_store  # noqa: PLC0415 - see the module docstring

    if settings.mailbox.kind != "maildir":
        raise ConfigError("mailbox.kind", "--seed-examples needs a maildir mailbox")
    with open_store(settings) as store:
        examples = seed_examples(store, settings.mailbox.path, list(EXAMPLES.glob("*.eml")))
    for example in examples:
        if not example.delivered:
            print(f"maild: {example.describe()}", file=sys.stderr)
    delivered = sum(example.delivered for example in examples)
    if delivered:
        print(f"maild: delivered {delivered} example messages into {settings.mailbox.path}/new", file=sys.stderr)
    else:
        print("maild: every example was recorded on a previous run; remove the database and the Maildirs "
              "(var/ for `make run`) to see them answered again", file=sys.stderr)


def _add_db(commands: argparse._SubParsersAction[argparse.ArgumentParser],
            common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("db", parents=[common], help="database maintenance")
    cmd.add_argument("action", choices=("upgrade",), help="upgrade: apply the migrations")
    cmd.set_defaults(handler=_db)


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from maild.daemon.wiring import open_store  # noqa: PLC0415 - see the module docstring

    store = open_store(settings)
    print(f"database {redact(settings.database.url)} at revision {store.revision()}")
    store.close()
    return 0


def _add_quarantine(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                    common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("quarantine", parents=[common], help="list or retry quarantined messages")
    cmd.add_argument("action", choices=("list", "retry"))
    cmd.add_argument("id", nargs="?", type=int, help="the entry to retry")
    cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd.set_defaults(handler=_quarantine)


def _quarantine(args: argparse.Namespace, settings: Settings) -> int:
    from maild.daemon.wiring import open_store  # noqa: PLC0415 - see the module docstring

    store = open_store(settings)
    try:
        if args.action == "retry":
            if args.id is None:
                return fail("quarantine retry needs an ID (see `maild quarantine list`)", EXIT_CONFIG)
            if not store.request_retry(args.id, datetime.now(UTC), by="cli"):
                return fail(f"quarantine entry {args.id} does not exist or is not quarantined")
            print(f"quarantine entry {args.id} will be retried by the daemon")
            return 0
        rows: list[dict[str, object]] = [{"id": e.id, "source_id": e.source_id, "size": e.size, "state": e.state.value,
                 "at": e.at.isoformat(), "error": e.error} for e in store.quarantine_list()]
        if args.json:
            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
        else:
            print_table(rows, ("id", "state", "at", "size", "source_id", "error"))
        return 0
    finally:
        store.close()


DAEMON_COMMANDS = (_add_run, _add_db, _add_quarantine)
