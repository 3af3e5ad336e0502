"""Operator commands of the ``maild`` CLI: queue, ticket show/resolve/reopen, stats, digest, status.

Each command reads (or changes) the database the daemon writes, through the
store, and prints a readable table by default or, with ``--json``, one JSON
object per line with each ticket's reference under ``ticket``. Replies
(resolution notices) go through the outbox like every other reply: the
running daemon sends them.

The database, the digest and the health check are imported by the handlers
that use them, not by this module: ``maild.cli`` builds every command's
options at each start, and ``maild triage``, ``check-config`` and the spawned
triage worker (which re-imports ``maild.cli``) need none of them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from maild.cli.channels import add_open
from maild.cli.output import emit, fail, open_store, operator_login, piped, print_table
from maild.errors import ConfigError
from maild.ops.views import (
    QUEUE_COLUMNS,
    MessageDetail,
    ignored_by_kind,
    kinds_line,
    message_detail,
    queue_cells,
    queue_json,
    queue_rows,
    resolution_notice,
    stats_rows,
    story_json,
    story_lines,
    totals,
    when,
)
from maild.records import EventKind, OutgoingMail, TicketState, TicketStory
from maild.responder import Responder, clean_text
from maild.rules import load_rules
from maild.settings import HEALTH_MAX_AGE, HEALTH_PROBE_TIMEOUT, Settings

if TYPE_CHECKING:
    from maild.store import Store

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace, Settings], int]

STATS_DAYS = 30


def _table(rows: Sequence[dict[str, object]], columns: Sequence[str]) -> None:

    print_table(rows, columns)


def _operator() -> str:
    """Who ran the command, for the event log."""
    return f"cli:{operator_login()}"


def _moment(value: str, settings: Settings) -> datetime:
    """An ISO date (local midnight) or timestamp; without an offset it is help desk local time."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError("--since", f"{value!r} is not an ISO 8601 date or timestamp") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=settings.service_hours.timezone)


def _no_ticket(reference: str) -> int:
    return fail(f"no ticket {reference}: `maild queue` lists the references of the open tickets "
                "(`maild queue --all` of the resolved ones too)")


# --------------------------------------------------------------------------
# queue


def _add_queue(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("queue", parents=[common],
                              help="open tickets in take-in order: priority, then arrival")
    cmd.add_argument("--all", action="store_true", help="resolved tickets too")
    cmd.add_argument("--limit", type=int, default=1000, help="at most this many tickets (default 1000)")
    cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd.set_defaults(handler=piped(_queue))


def _queue(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store:
        tickets = store.queue(None if args.all else TicketState.OPEN, limit=args.limit)
    rows = queue_rows(tickets, datetime.now(UTC))
    if args.json:
        for row in rows:
            emit(queue_json(row))
    else:
        _table([queue_cells(r, settings.service_hours.timezone) for r in rows], QUEUE_COLUMNS)
    return 0


# --------------------------------------------------------------------------
# ticket show / resolve / reopen


def _add_ticket(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    ticket = commands.add_parser("ticket", help="show, resolve, reopen one ticket, or open one by phone or fax")
    actions = ticket.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", parents=[common], help="the whole story of a ticket")
    show.add_argument("reference", metavar="REF")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(handler=piped(_show))
    resolve = actions.add_parser("resolve", parents=[common],
                                 help="resolve a ticket and send the requester a resolution notice")
    resolve.add_argument("reference", metavar="REF")
    resolve.add_argument("--note", help="a note for the requester, included in the notice")
    resolve.set_defaults(handler=_resolve)
    reopen = actions.add_parser("reopen", parents=[common], help="reopen a resolved ticket")
    reopen.add_argument("reference", metavar="REF")
    reopen.add_argument("--note", help="why, for the event log")
    reopen.set_defaults(handler=_reopen)
    add_open(actions, common)


def _details(store: Store, story: TicketStory, settings: Settings) -> dict[int, MessageDetail]:
    """Each message parsed and classified again from its raw bytes, as the intake did."""
    rules = load_rules(settings.triage.rules)
    details: dict[int, MessageDetail] = {}
    for message in story.messages:
        raw = store.message_raw(message.id)
        if raw is not None:
            details[message.id] = message_detail(raw, settings.limits, rules, settings.triage.default_language)
    return details


def _show(args: argparse.Namespace, settings: Settings) -> int:
    with open_store(settings) as store:
        story = store.ticket_story(args.reference)
        if story is None:
            return _no_ticket(args.reference)
        details = _details(store, story, settings)
    now = datetime.now(UTC)
    if args.json:
        emit(story_json(story, details, now))
    else:
        print("\n".join(story_lines(story, details, settings.service_hours.timezone, now)))
    return 0


def _resolve(args: argparse.Namespace, settings: Settings) -> int:
    note = clean_text(args.note) if args.note and args.note.strip() else None
    now = datetime.now(UTC)
    with open_store(settings) as store:
        story = store.ticket_story(args.reference)
        if story is None:
            return _no_ticket(args.reference)
        ref = story.ticket.reference
        if story.ticket.state is TicketState.RESOLVED:
            return fail(f"{ref} is already resolved")
        replies: tuple[OutgoingMail, ...] = ()
        if story.ticket.decision != "rejected":
            responder = Responder(settings.templates.path, settings.helpdesk,
                                  timezone=settings.service_hours.timezone)
            replies = (resolution_notice(story, _details(store, story, settings), responder, settings,
                                         note=note, now=now),)
        reasons = (f"note: {note}",) if note else ()
        if not store.resolve(ref, now, by=_operator(), reasons=reasons, replies=replies):
            return fail(f"{ref} was changed meanwhile; nothing done")
    if replies:
        print(f"{ref} resolved; resolution notice {replies[0].message_id} to {', '.join(replies[0].recipients)} "
              "queued (the daemon sends it)")
    else:
        print(f"{ref} resolved; no notice sent: the request was refused, and the requester was told so already")
    return 0


def _reopen(args: argparse.Namespace, settings: Settings) -> int:
    note = clean_text(args.note) if args.note and args.note.strip() else None
    with open_store(settings) as store:
        ticket = store.ticket(args.reference)
        if ticket is None:
            return _no_ticket(args.reference)
        if not store.reopen(ticket.reference, datetime.now(UTC), by=_operator(),
                            reasons=(f"note: {note}",) if note else ()):
            return fail(f"{ticket.reference} is not resolved")
    print(f"{ticket.reference} reopened")
    return 0


# --------------------------------------------------------------------------
# stats


def _add_stats(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("stats", parents=[common], help="counts by category, decision and Administration")
    cmd.add_argument("--since", metavar="DATE",
                     help=f"ISO date or timestamp, local time unless it has an offset (default: {STATS_DAYS} days ago)")
    cmd.add_argument("--json", action="store_true", help="one JSON object per line")
    cmd.set_defaults(handler=piped(_stats))


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    tz = settings.service_hours.timezone
    now = datetime.now(UTC)
    if args.since:
        since = _moment(args.since, settings)
    else:
        first = now.astimezone(tz).date() - timedelta(days=STATS_DAYS - 1)
        since = datetime.combine(first, datetime.min.time(), tzinfo=tz)
    with open_store(settings) as store:
        rows = stats_rows(store.message_counts(since, now))
        stats = store.stats(since, now)
        screened = ignored_by_kind(store.events_of_kind(EventKind.IGNORED, since, now))
    if args.json:
        for row in rows:
            emit({"category": row.category, "decision": row.decision, "administration": row.administration,
                   "messages": row.messages, "tickets": row.tickets, "since": since.isoformat(),
                   "until": now.isoformat()})
        return 0
    print(f"Messages recorded from {when(since, tz)} to {when(now, tz)} ({tz})")
    print()
    _table([{"category": r.category, "decision": r.decision, "administration": r.administration,
             "messages": r.messages, "new_tickets": r.tickets} for r in rows],
           ("category", "decision", "administration", "messages", "new_tickets"))
    print()
    for field in ("category", "decision", "administration"):
        summed = ", ".join(f"{k} {n}" for k, n in totals(rows, field)) or "none"
        print(f"by {field + ':':<16} {summed}")
    print(f"{'ignored by kind:':<19} {kinds_line(screened)}")
    outbox = ", ".join(f"{s} {n}" for s, n in stats.outbox_by_state_now) or "empty"
    print(f"tickets:            {stats.tickets_opened} opened, {stats.tickets_taken_in} taken in, "
          f"{stats.tickets_resolved} resolved")
    print(f"replies:            {stats.replies_sent} sent, {stats.replies_held} held by the per-sender limit")
    print(f"now:                {stats.open_now} open, {stats.waiting_take_in_now} waiting for take-in, "
          f"{stats.quarantined_now} quarantined; outbox {outbox}")
    return 0


# --------------------------------------------------------------------------
# digest


def _add_digest(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("digest", parents=[common], help="render the operators' digest (nothing is sent)")
    cmd.add_argument("--since", metavar="ISO",
                     help="news since this date or timestamp (default: the last digest sent, else a day ago)")
    cmd.add_argument("--print", action="store_true", dest="print_text", help="print the text part (the default)")
    cmd.add_argument("--html", type=Path, metavar="FILE", help="write the HTML part, chart included, to FILE")
    cmd.set_defaults(handler=piped(_digest))


def _digest(args: argparse.Namespace, settings: Settings) -> int:
    from maild.ops.digest import DigestRenderer, build_digest, last_digest_at  # noqa: PLC0415 - see the module docstring

    now = datetime.now(UTC)
    renderer = DigestRenderer(settings.templates.path, settings.service_hours.timezone)
    with open_store(settings) as store:
        since = _moment(args.since, settings) if args.since else last_digest_at(store) or now - timedelta(days=1)
        content = build_digest(store, settings, now, since)
    if args.html is not None:
        try:
            args.html.write_text(renderer.html(content), encoding="utf-8")
        except OSError as exc:
            return fail(f"cannot write {args.html}: {exc.strerror}")
    if args.print_text or args.html is None:
        sys.stdout.write(renderer.text(content))
    return 0


# --------------------------------------------------------------------------
# status


def _add_status(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                common: argparse.ArgumentParser) -> None:
    cmd = commands.add_parser("status", parents=[common],
                              help="is maild running and healthy? exit 0 yes, 1 unhealthy, 3 not running")
    cmd.add_argument("--max-age", type=float, default=HEALTH_MAX_AGE.total_seconds(), metavar="SECONDS",
                     help="oldest acceptable heartbeat and last successful read of the mailbox (default %(default)s)")
    cmd.add_argument("--timeout", type=float, default=HEALTH_PROBE_TIMEOUT, metavar="SECONDS",
                     help="for the mailbox probe (default %(default)s)")
    cmd.add_argument("--json", action="store_true", help="one JSON object")
    cmd.set_defaults(handler=piped(_status))


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from maild.ops.health import check, status_json, status_lines  # noqa: PLC0415 - see the module docstring

    with open_store(settings) as store:
        health = check(store, settings, datetime.now(UTC), max_age=timedelta(seconds=args.max_age),
                       timeout=args.timeout)
    if args.json:
        emit(status_json(health))
    else:
        print("\n".join(status_lines(health, settings)))
    return health.exit_code


OPERATOR_COMMANDS: tuple[Register, ...] = (_add_queue, _add_ticket, _add_stats, _add_digest, _add_status)
