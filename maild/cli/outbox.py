"""``maild outbox list`` and ``maild outbox release``: the replies to send, and a held one sent after all.

The per-sender brake holds a reply for good, because it cannot tell two
auto-responders answering each other from a person who writes often; an
operator can, and releases the reply. The database is imported by the handlers
(see ``maild.cli.main``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime

from maild.cli.output import emit, fail, open_store, operator_login, piped, print_table
from maild.ops.views import OUTBOX_COLUMNS, outbox_cells, outbox_json
from maild.records import OutboxState
from maild.settings import Settings

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]


def _add_outbox(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    outbox = commands.add_parser("outbox", help="list the replies to send, release one held by the per-sender brake")
    actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="replies newest first, with their state and why")
    listing.add_argument("--held", action="store_true", help="only the replies held by the per-sender brake")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many replies (default 1000)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=piped(_list))
    release = actions.add_parser("release", parents=[common],
                                 help="send a reply held by the per-sender brake after all (the daemon sends it)")
    release.add_argument("id", type=int, metavar="ID", help="the reply's id, from `maild outbox list --held`")
    release.set_defaults(handler=_release)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store:
        replies = store.outbox_listing(OutboxState.HELD if args.held else None, limit=args.limit)
    if args.json:
        for reply in replies:
            emit(outbox_json(reply))
    else:
        tz = settings.service_hours.timezone
        print_table([outbox_cells(r, tz) for r in replies], OUTBOX_COLUMNS, uncut=("message_id", "note"))
    return 0


def _release(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store:
        reply = store.outbox_entry(args.id)
        if reply is None:
            return fail(f"no reply {args.id} in the outbox: `maild outbox list --held` lists the held ones")
        if reply.state is not OutboxState.HELD:
            return fail(f"reply {args.id} is {reply.state.value}, not held: only a reply held by the per-sender "
                        "brake can be released")
        if not store.release_held(args.id, datetime.now(UTC), by=operator_login()):
            return fail(f"reply {args.id} was changed meanwhile; nothing done")
    about = f" about {reply.ticket}" if reply.ticket else ""
    print(f"reply {args.id} ({reply.kind} to {', '.join(reply.recipients)}{about}) released: the daemon sends it "
          "past the per-sender brake")
    return 0


OUTBOX_COMMANDS: tuple[Register, ...] = (_add_outbox,)
