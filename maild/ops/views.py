"""Read models for the operators' commands: the queue, the outbox, one ticket's story, statistics.

Pure functions from the store's frozen records (and a message's raw bytes) to
frozen rows and printable lines. The CLI does the I/O; everything here takes
``now`` and the help desk's time zone as arguments, so the same database
always prints the same way, in tests and at 3 a.m.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from maild import certified
from maild.classifier import classify
from maild.mail.parsing import parse_message
from maild.records import (
    Address,
    Category,
    Event,
    EventKind,
    MessageCount,
    MessageSummary,
    OutboxState,
    OutboxSummary,
    OutgoingMail,
    TicketState,
    TicketStory,
    TicketSummary,
)
from maild.responder import Responder, clean_line, make_message_id
from maild.rules import Rules
from maild.settings import Limits, Settings

TEXT_LIMIT = 4000
"""Characters of a message's classified text shown by ``ticket show``."""
_TAKE_IN_REASON = re.compile(
    r"^(received time: |received \d{4}-\d\d-\d\d |within service hours|\d{4}-\d\d-\d\d: |taken in at )")


# --------------------------------------------------------------------------
# Small formatting helpers


def when(moment: datetime | None, tz: tzinfo) -> str:
    """``2027-01-18 08:00`` in the help desk's zone; ``-`` for nothing."""
    return "-" if moment is None else moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def age(delta: timedelta) -> str:
    """``3d 04h``, ``2h 05m``, ``12m``: how long something has waited, at a glance."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {mins:02d}m"
    return f"{mins}m"


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# --------------------------------------------------------------------------
# Queue


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One ticket in the work queue."""

    ticket: str
    priority: int
    category: str
    decision: str
    requester: str
    administration: str | None
    subject: str
    received_at: datetime
    take_in_at: datetime
    taken_in_at: datetime | None
    age: timedelta
    state: str
    """``waiting`` (take-in ahead), ``due`` (take-in passed, not yet done), ``taken in``, ``resolved``."""
    channel: str = "email"
    review: str | None = None
    """Why triage was unsure of the category: look at this ticket first."""


def ticket_state(ticket: TicketSummary, now: datetime) -> str:
    if ticket.state is TicketState.RESOLVED:
        return "resolved"
    if ticket.taken_in_at is not None:
        return "taken in"
    return "due" if ticket.take_in_at <= now else "waiting"


def queue_rows(tickets: Iterable[TicketSummary], now: datetime) -> tuple[QueueRow, ...]:
    """Rows in the order given (the store's: priority, then arrival)."""
    return tuple(
        QueueRow(ticket=t.reference, priority=t.priority, category=t.category, decision=t.decision,
                 requester=t.requester, administration=t.administration, subject=t.subject,
                 received_at=t.received_at, take_in_at=t.take_in_at, taken_in_at=t.taken_in_at,
                 age=now - t.received_at, state=ticket_state(t, now), channel=t.channel, review=t.review)
        for t in tickets
    )


QUEUE_COLUMNS = ("ticket", "priority", "category", "decision", "review", "requester", "administration",
                 "received", "take_in", "age", "state", "channel")


def queue_cells(row: QueueRow, tz: tzinfo) -> dict[str, object]:
    """A queue row for the terminal table."""
    return {"ticket": row.ticket, "priority": row.priority, "category": row.category, "decision": row.decision,
            "review": "yes" if row.review else "", "requester": row.requester, "administration": row.administration,
            "received": when(row.received_at, tz), "take_in": when(row.take_in_at, tz), "age": age(row.age),
            "state": row.state, "channel": row.channel}


def queue_json(row: QueueRow) -> dict[str, object]:
    """A queue row for scripts (a contract: keys are only ever added)."""
    return {"ticket": row.ticket, "priority": row.priority, "category": row.category, "decision": row.decision,
            "requester": row.requester, "administration": row.administration, "subject": row.subject,
            "received_at": iso(row.received_at), "take_in_at": iso(row.take_in_at),
            "taken_in_at": iso(row.taken_in_at), "age_seconds": int(row.age.total_seconds()), "state": row.state,
            "channel": row.channel, "review": row.review is not None, "review_reason": row.review}


# --------------------------------------------------------------------------
# Outbox


OUTBOX_COLUMNS = ("id", "state", "kind", "recipient", "ticket", "queued", "claimed", "message_id", "note")


def outbox_note(reply: OutboxSummary, tz: tzinfo) -> str:
    """Why a reply is where it is: the brake's reason, the last refusal before a retry or for good, its release."""
    if reply.state is OutboxState.HELD:
        return reply.last_error or "per-sender brake"
    if reply.last_error and reply.state in (OutboxState.PENDING, OutboxState.FAILED):
        return reply.last_error
    if reply.released_at is not None:
        return f"released {when(reply.released_at, tz)}"
    return ""


def outbox_cells(reply: OutboxSummary, tz: tzinfo) -> dict[str, object]:
    """An outbox row for the terminal table."""
    return {"id": reply.id, "state": reply.state.value, "kind": reply.kind, "recipient": ", ".join(reply.recipients),
            "ticket": reply.ticket, "queued": when(reply.created_at, tz), "claimed": when(reply.claimed_at, tz),
            "message_id": reply.message_id, "note": outbox_note(reply, tz)}


def outbox_json(reply: OutboxSummary) -> dict[str, object]:
    """An outbox row for scripts (a contract: keys are only ever added)."""
    return {"id": reply.id, "state": reply.state.value, "kind": reply.kind, "recipients": list(reply.recipients),
            "ticket": reply.ticket, "message_id": reply.message_id, "attempts": reply.attempts,
            "queued_at": iso(reply.created_at), "claimed_at": iso(reply.claimed_at), "sent_at": iso(reply.sent_at),
            "next_attempt_at": iso(reply.next_attempt_at), "released_at": iso(reply.released_at),
            "hold_reason": reply.last_error if reply.state is OutboxState.HELD else None,
            "last_error": reply.last_error}


# --------------------------------------------------------------------------
# Reasons


@dataclass(frozen=True, slots=True)
class ReasonGroups:
    """A disposition's reasons sorted by the question they answer."""

    screen: tuple[str, ...]
    category: tuple[str, ...]
    """Why this category, and the language."""
    administration: tuple[str, ...]
    authorization: tuple[str, ...]
    """Why authorized or refused (privileged requests only)."""
    take_in: tuple[str, ...]
    """Why this take-in time."""
    pec: tuple[str, ...] = ()
    """What a PEC message says it is (kind, provider, claimed sender)."""


def group_reasons(reasons: Iterable[str]) -> ReasonGroups:
    """Sort the pipeline's reasons by their stage (each stage writes its own prefix or phrasing)."""
    groups: dict[str, list[str]] = {"screen": [], "category": [], "administration": [], "authorization": [],
                                    "take_in": [], "pec": []}
    for reason in reasons:
        if reason.startswith("pec:"):
            groups["pec"].append(reason)
        elif reason.startswith("screen:"):
            groups["screen"].append(reason)
        elif reason.startswith("administration:"):
            groups["administration"].append(reason)
        elif reason.startswith("auth:"):
            groups["authorization"].append(reason)
        elif _TAKE_IN_REASON.match(reason):
            groups["take_in"].append(reason)
        else:
            groups["category"].append(reason)
    return ReasonGroups(**{k: tuple(v) for k, v in groups.items()})


def authorization_reasons(reasons: Iterable[str]) -> tuple[str, ...]:
    """Only the authorization stage's reasons: why a privileged request was refused."""
    return group_reasons(reasons).authorization


# --------------------------------------------------------------------------
# One ticket's story


@dataclass(frozen=True, slots=True)
class MessageDetail:
    """What ``ticket show`` prints about one message beyond its summary."""

    headers: tuple[tuple[str, str], ...]
    """The headers that matter, decoded and cleaned for a terminal."""
    sender: Address | None
    references: tuple[str, ...]
    classified_text: str


SHOWN_HEADERS = ("From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To",
                 "Return-Path", "Auto-Submitted", "Authentication-Results")


def message_detail(raw: bytes, limits: Limits, rules: Rules, default_language: str) -> MessageDetail:
    """Parse ``raw`` again (bounded, never raising), unwrap PEC and classify it as the intake does."""
    m = parse_message(raw, limits)
    pec = certified.read(raw, m, limits)
    m = pec.message if pec is not None else m

    def addrs(values: Sequence[Address]) -> str:
        return ", ".join(f"{a.name} <{a.addr}>" if a.name else a.addr for a in values)

    values: list[tuple[str, str]] = [
        ("From", addrs(m.from_addresses)), ("Sender", addrs(m.sender)), ("Reply-To", addrs(m.reply_to)),
        ("To", addrs(m.to)), ("Cc", addrs(m.cc)), ("Subject", m.subject),
        ("Date", m.date.isoformat() if m.date else ""), ("Message-ID", m.message_id),
        ("In-Reply-To", " ".join(m.in_reply_to)),
        ("Return-Path", "<>" if m.return_path == "" else m.return_path or ""),
        ("Auto-Submitted", m.auto_submitted or ""),
        *(("Authentication-Results", a) for a in m.auth_results),
    ]
    headers = tuple((k, clean_line(v, 500)) for k, v in values if v)
    text = classify(m, rules, default_language).text
    if len(text) > TEXT_LIMIT:
        text = text[:TEXT_LIMIT] + "\n[…]"
    return MessageDetail(headers=headers, sender=m.from_addresses[0] if m.from_addresses else None,
                         references=m.references, classified_text=text)


def _data(event: Event) -> str:
    return ", ".join(f"{k}={clean_line(v, 120)}" for k, v in event.data if v)


def story_lines(story: TicketStory, details: dict[int, MessageDetail], tz: tzinfo, now: datetime) -> list[str]:
    """The whole story of one ticket for a terminal: facts, messages and why, events, replies."""
    t = story.ticket
    lines = [f"{t.reference}  {ticket_state(t, now)}  ({t.category}, {t.decision}, priority {t.priority})", ""]
    facts = (("requester", t.requester), ("channel", _channel(story)), ("administration", t.administration or "-"),
             ("subject", clean_line(t.subject, 200)), ("language", t.language),
             ("received", f"{when(t.received_at, tz)}  ({age(now - t.received_at)} ago)"),
             ("take-in", f"{when(t.take_in_at, tz)}  ({'in hours' if t.in_hours else 'out of hours'})"),
             ("taken in", when(t.taken_in_at, tz)), ("resolved", when(t.resolved_at, tz)))
    lines += [f"  {name:<15} {value}" for name, value in facts]
    for index, message in enumerate(story.messages, 1):
        lines += ["", *_message_lines(index, message, details.get(message.id), tz)]
    lines += ["", f"Events ({len(story.events)})"]
    shown = {m.id: m.reasons for m in story.messages}
    for event in story.events:
        lines.append(f"  {when(event.at, tz)}  {event.kind:<13} {_data(event)}".rstrip())
        if event.reasons and event.reasons != shown.get(event.message_id or -1):
            lines += [f"      - {clean_line(r, 300)}" for r in event.reasons]
    lines += ["", f"Replies ({len(story.replies)})"]
    lines += [_reply_line(r, tz) for r in story.replies] or ["  none"]
    return lines


def _message_lines(index: int, m: MessageSummary, detail: MessageDetail | None, tz: tzinfo) -> list[str]:
    lines = [f"Message {index} ({m.kind.value}, {m.category}, {m.decision}), received {when(m.received_at, tz)}, "
             f"{m.size} bytes"]
    if detail is None:
        lines += [f"  Message-ID: {m.message_id}", f"  From: {m.from_addr}", f"  Subject: {clean_line(m.subject, 200)}"]
    else:
        lines += [f"  {name}: {value}" for name, value in detail.headers]
        lines += ["  Text classified:"]
        lines += [f"  | {line}" for line in (detail.classified_text or "(empty)").splitlines()]
    groups = group_reasons(m.reasons)
    for title, reasons in (("PEC", groups.pec), ("Screening", groups.screen), ("Why this category", groups.category),
                           ("Administration", groups.administration),
                           ("Why authorized or refused", groups.authorization),
                           ("Why this take-in time", groups.take_in)):
        if reasons:
            lines += [f"  {title}:", *(f"    - {clean_line(r, 300)}" for r in reasons)]
    return lines


def _reply_line(r: OutboxSummary, tz: tzinfo) -> str:
    state = f"{r.state.value} {when(r.sent_at, tz)}" if r.sent_at else r.state.value
    error = f"  last error: {clean_line(r.last_error, 200)}" if r.last_error else ""
    return (f"  {when(r.created_at, tz)}  {r.kind:<16} to {', '.join(r.recipients)}  {state}  "
            f"attempts {r.attempts}  {r.message_id}{error}")


def _origin(story: TicketStory) -> str:
    """Who typed a request in (``operator LOGIN``) or where the form was sent from; "" for e-mail."""
    if story.ticket.channel == "email" or not story.messages:
        return ""
    return story.messages[0].source_id.partition(":")[2]


def _channel(story: TicketStory) -> str:
    origin = _origin(story)
    return f"{story.ticket.channel} ({clean_line(origin, 100)})" if origin else story.ticket.channel


def story_json(story: TicketStory, details: dict[int, MessageDetail], now: datetime) -> dict[str, object]:
    """The story for scripts: one object, the reference under ``ticket``."""
    t = story.ticket
    return {
        "ticket": t.reference, "state": ticket_state(t, now), "category": t.category, "decision": t.decision,
        "priority": t.priority, "requester": t.requester, "administration": t.administration,
        "subject": t.subject, "language": t.language, "received_at": iso(t.received_at),
        "take_in_at": iso(t.take_in_at), "in_hours": t.in_hours, "taken_in_at": iso(t.taken_in_at),
        "resolved_at": iso(t.resolved_at), "channel": t.channel, "origin": _origin(story),
        "messages": [_message_json(m, details.get(m.id)) for m in story.messages],
        "events": [{"at": iso(e.at), "kind": e.kind, "message": e.message_id, "outbox": e.outbox_id,
                    "reasons": list(e.reasons), "data": dict(e.data)} for e in story.events],
        "replies": [{"kind": r.kind, "message_id": r.message_id, "recipients": list(r.recipients),
                     "state": r.state.value, "attempts": r.attempts, "created_at": iso(r.created_at),
                     "sent_at": iso(r.sent_at), "last_error": r.last_error} for r in story.replies],
    }


def _message_json(m: MessageSummary, detail: MessageDetail | None) -> dict[str, object]:
    groups = group_reasons(m.reasons)
    return {
        "id": m.id, "message_id": m.message_id, "kind": m.kind.value, "from": m.from_addr, "subject": m.subject,
        "category": m.category, "decision": m.decision, "received_at": iso(m.received_at), "size": m.size,
        "headers": [list(h) for h in detail.headers] if detail else [],
        "classified_text": detail.classified_text if detail else None,
        "reasons": {"screen": list(groups.screen), "category": list(groups.category),
                    "administration": list(groups.administration),
                    "authorization": list(groups.authorization), "take_in": list(groups.take_in)},
    }


# --------------------------------------------------------------------------
# Resolution notice


def resolution_notice(story: TicketStory, details: dict[int, MessageDetail], responder: Responder,
                      settings: Settings, *, note: str | None, now: datetime) -> OutgoingMail:
    """The threaded notice that tells the requester the ticket is resolved.

    It answers the requester's latest message in the ticket (In-Reply-To and
    References from it); its Message-ID is derived from the ticket and the
    number of times it was resolved, so a retried command can never queue a
    second, different notice for the same resolution.
    """
    t = story.ticket
    own = [m for m in story.messages if m.from_addr.lower() == t.requester] or list(story.messages)
    parent = own[-1] if own else None
    detail = details.get(parent.id) if parent else None
    sender = detail.sender if detail and detail.sender and detail.sender.key == t.requester else None
    times = 1 + sum(1 for e in story.events if e.kind == EventKind.RESOLVED.value)
    return responder.resolution(
        ticket_ref=t.reference, requester=sender or Address("", t.requester), subject=t.subject,
        language=t.language, category=Category(t.category), note=note,
        in_reply_to=parent.message_id if parent else "", references=detail.references if detail else (),
        message_id=make_message_id(settings.helpdesk.address, f"{t.reference}.resolution.{times}"), now=now,
    )


# --------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True, slots=True)
class StatsRow:
    category: str
    decision: str
    administration: str | None
    messages: int
    tickets: int
    """New tickets among those messages (follow-ups and ignored mail open none)."""


def stats_rows(counts: Iterable[MessageCount]) -> tuple[StatsRow, ...]:
    """Counts by category, decision and Administration, summed over the message kinds."""
    messages: Counter[tuple[str, str, str | None]] = Counter()
    tickets: Counter[tuple[str, str, str | None]] = Counter()
    for c in counts:
        key = (c.category, c.decision, c.administration)
        messages[key] += c.count
        if c.kind.value == "new":
            tickets[key] += c.count
    order = sorted(messages, key=lambda k: (k[0], k[1], k[2] or ""))
    return tuple(StatsRow(c, d, a, messages[(c, d, a)], tickets[(c, d, a)]) for c, d, a in order)


def totals(rows: Iterable[StatsRow], field: str) -> tuple[tuple[str, int], ...]:
    """Messages summed by one of ``category``, ``decision``, ``administration``."""
    summed: Counter[str] = Counter()
    for row in rows:
        summed[str(getattr(row, field) or "-")] += row.messages
    return tuple(sorted(summed.items(), key=lambda kv: (-kv[1], kv[0])))


def ignored_by_kind(events: Iterable[Event]) -> tuple[tuple[str, int], ...]:
    """Ignored messages by the kind of automatic mail the screener found, most first: a bounce storm or a
    list hitting the help desk shows at a glance."""
    counted: Counter[str] = Counter(dict(e.data).get("screen_kind", "unknown") for e in events)
    return tuple(sorted(counted.items(), key=lambda kv: (-kv[1], kv[0])))


def kinds_line(counts: Iterable[tuple[str, int]]) -> str:
    """``bounce 3, list 1``: the split in one line, "none" when empty."""
    return ", ".join(f"{kind} {n}" for kind, n in counts) or "none"
