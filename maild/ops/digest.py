"""The operators' digest: what happened since the last one, in their inbox every opening morning.

``build_digest`` reads the store into one frozen ``DigestContent``; the
``DigestRenderer`` turns it into text and HTML (Jinja2 templates
``digest.txt.j2`` and ``digest.html.j2``, looked up in the configured
templates folder, then in the shipped one) and a multipart e-mail. The daily
volume chart is an inline SVG drawn here: a few rectangles need no library.

Once per period: the period is the help desk's local date, recorded by
``Store.record_digest`` in the same transaction as the digest's outbox row,
so neither a restart nor a second daemon sends it twice. ``send_due_digest``
is idempotent; the daemon calls it from a cron job at ``[digest] time`` and
once at start (a digest missed while the daemon was down goes out late
rather than never).
"""

from __future__ import annotations

import html
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from email import policy
from email.errors import MessageError
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import jinja2
from markupsafe import Markup

from maild.errors import TemplateError
from maild.hours import ServiceCalendar
from maild.ops.views import age, authorization_reasons, ignored_by_kind, when
from maild.records import (
    Category,
    Event,
    EventKind,
    MessageCount,
    MessageFact,
    OutboxState,
    OutboxSummary,
    OutgoingMail,
    QuarantineEntry,
    QuarantineState,
    TicketState,
    TicketSummary,
)
from maild.responder import clean_line, make_message_id
from maild.settings import DEFAULT_TEMPLATES, Settings
from maild.store import Store
from maild.store.state import DIGEST_PREFIX

log = logging.getLogger("maild.digest")

TEMPLATES = ("digest.txt.j2", "digest.html.j2")
CHART_DAYS = 14
OLDEST = 10
IGNORED = "ignored"
SERIES = (*(c.value for c in Category), IGNORED)
"""Chart series: the four categories, then automatic mail (recorded, never answered)."""
COLORS = {"anagrafica": "#4e79a7", "password_reset": "#f28e2b", "lifecycle": "#e15759", "other": "#76b7b2",
          IGNORED: "#bab0ac"}


# --------------------------------------------------------------------------
# Content


@dataclass(frozen=True, slots=True)
class NewTickets:
    category: str
    accepted: int
    rejected: int

    @property
    def total(self) -> int:
        return self.accepted + self.rejected


@dataclass(frozen=True, slots=True)
class WaitingGroup:
    """Open tickets not taken in yet, of one priority."""

    priority: int
    categories: tuple[str, ...]
    count: int
    next_take_in: datetime


@dataclass(frozen=True, slots=True)
class TicketLine:
    ticket: str
    category: str
    decision: str
    requester: str
    received_at: datetime
    age: timedelta
    taken_in: bool


@dataclass(frozen=True, slots=True)
class ReviewLine:
    """An open ticket triage was unsure of, and why."""

    ticket: str
    category: str
    decision: str
    requester: str
    reason: str


@dataclass(frozen=True, slots=True)
class RefusedAttempt:
    """Who tried what, and why it was refused."""

    ticket: str | None
    sender: str
    category: str
    subject: str
    received_at: datetime
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ChannelLine:
    """A request that came by web, phone or fax."""

    ticket: str
    channel: str
    category: str
    decision: str
    requester: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class PinFailureLine:
    at: datetime
    administration: str
    channel: str
    client: str


@dataclass(frozen=True, slots=True)
class QuarantineLine:
    id: int
    at: datetime
    source_id: str
    size: int
    error: str
    state: str


@dataclass(frozen=True, slots=True)
class ReplyLine:
    kind: str
    recipients: str
    message_id: str
    attempts: int
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class UndeliveredLine:
    """A PEC notice that one of our replies did not reach its recipient."""

    ticket: str
    at: datetime
    outcome: str
    reply: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Messages per local day and series; ``counts[d][s]`` is day ``days[d]``, series ``series[s]``."""

    days: tuple[date, ...]
    series: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]

    def total(self, day: int) -> int:
        return sum(self.counts[day])

    @property
    def peak(self) -> int:
        return max((self.total(i) for i in range(len(self.days))), default=0)


@dataclass(frozen=True, slots=True)
class DigestContent:
    helpdesk_name: str
    period: str
    """The help desk's local date the digest is for (``2027-01-18``)."""
    since: datetime
    until: datetime
    timezone: tzinfo
    new: tuple[NewTickets, ...]
    ignored: int
    followups: int
    waiting: tuple[WaitingGroup, ...]
    oldest: tuple[TicketLine, ...]
    review: tuple[ReviewLine, ...]
    """Open tickets whose category triage was unsure of: an operator checks them first."""
    refused: tuple[RefusedAttempt, ...]
    quarantined: tuple[QuarantineLine, ...]
    held: tuple[ReplyLine, ...]
    failed: tuple[ReplyLine, ...]
    retrying: tuple[ReplyLine, ...]
    chart: Chart
    channels: tuple[ChannelLine, ...] = ()
    ignored_by_kind: tuple[tuple[str, int], ...] = ()
    """The ignored mail split by the kind of automatic mail it is (bounce, auto_reply, list...)."""
    """New tickets since the last digest that did not come by e-mail."""
    pin_failures: tuple[PinFailureLine, ...] = ()
    undelivered: tuple[UndeliveredLine, ...] = ()
    """PEC non-delivery notices for our replies: an Administration may not have heard from us."""
    not_sendable: tuple[UndeliveredLine, ...] = ()
    """Replies not queued because their recipient cannot or must not be written to (``outcome``: why)."""

    @property
    def new_total(self) -> int:
        return sum(n.total for n in self.new)

    @property
    def waiting_total(self) -> int:
        return sum(w.count for w in self.waiting)


# --------------------------------------------------------------------------
# Pure pieces


def new_tickets(counts: Iterable[MessageCount]) -> tuple[tuple[NewTickets, ...], int, int]:
    """New tickets by category and decision; and the ignored and follow-up message counts."""
    accepted: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    ignored = followups = 0
    for c in counts:
        if c.kind.value == "new":
            (rejected if c.decision == "rejected" else accepted)[c.category] += c.count
        elif c.kind.value == "ignored":
            ignored += c.count
        elif c.kind.value == "followup":
            followups += c.count
    rows = tuple(NewTickets(cat.value, accepted[cat.value], rejected[cat.value]) for cat in Category
                 if accepted[cat.value] or rejected[cat.value])
    return rows, ignored, followups


def waiting_groups(tickets: Iterable[TicketSummary]) -> tuple[WaitingGroup, ...]:
    """Open tickets not yet taken in, by priority (most urgent first)."""
    by_priority: dict[int, list[TicketSummary]] = {}
    for t in tickets:
        if t.state is TicketState.OPEN and t.taken_in_at is None:
            by_priority.setdefault(t.priority, []).append(t)
    return tuple(
        WaitingGroup(priority=p, categories=tuple(sorted({t.category for t in group})), count=len(group),
                     next_take_in=min(t.take_in_at for t in group))
        for p, group in sorted(by_priority.items())
    )


def oldest_open(tickets: Iterable[TicketSummary], now: datetime, limit: int = OLDEST) -> tuple[TicketLine, ...]:
    open_tickets = sorted((t for t in tickets if t.state is TicketState.OPEN), key=lambda t: (t.received_at, t.id))
    return tuple(TicketLine(t.reference, t.category, t.decision, t.requester, t.received_at, now - t.received_at,
                            t.taken_in_at is not None) for t in open_tickets[:limit])


def to_review(tickets: Iterable[TicketSummary]) -> tuple[ReviewLine, ...]:
    """Open tickets marked for review, oldest first."""
    marked = sorted((t for t in tickets if t.state is TicketState.OPEN and t.review),
                    key=lambda t: (t.received_at, t.id))
    return tuple(ReviewLine(t.reference, t.category, t.decision, t.requester, t.review or "") for t in marked)


def refused_attempts(facts: Iterable[MessageFact]) -> tuple[RefusedAttempt, ...]:
    return tuple(RefusedAttempt(ticket=f.ticket, sender=f.from_addr, category=f.category,
                                subject=clean_line(f.subject, 120), received_at=f.received_at,
                                reasons=authorization_reasons(f.reasons) or f.reasons)
                 for f in facts if f.decision == "rejected")


def quarantine_lines(entries: Iterable[QuarantineEntry]) -> tuple[QuarantineLine, ...]:
    return tuple(QuarantineLine(e.id, e.at, e.source_id, e.size, clean_line(e.error, 200), e.state.value)
                 for e in entries)


def reply_lines(replies: Iterable[OutboxSummary]) -> tuple[ReplyLine, ...]:
    return tuple(ReplyLine(kind=r.kind, recipients=", ".join(r.recipients), message_id=r.message_id,
                           attempts=r.attempts,
                           at=r.next_attempt_at if r.state is OutboxState.PENDING else r.created_at,
                           reason=clean_line(r.last_error or "", 200)) for r in replies)


def undelivered_lines(events: Iterable[Event]) -> tuple[UndeliveredLine, ...]:
    return tuple(UndeliveredLine(ticket=dict(e.data).get("ticket", "-"), at=e.at,
                                 outcome=dict(e.data).get("outcome", ""), reply=dict(e.data).get("reply", ""))
                 for e in events)


def not_sendable_lines(events: Iterable[Event]) -> tuple[UndeliveredLine, ...]:
    return tuple(UndeliveredLine(ticket=dict(e.data).get("ticket", "-"), at=e.at,
                                 outcome=clean_line(e.reasons[0] if e.reasons else "", 200),
                                 reply=dict(e.data).get("kind", "")) for e in events)


def chart_of(facts: Iterable[MessageFact], today: date, tz: tzinfo, days: int = CHART_DAYS) -> Chart:
    """Messages received per local day over the ``days`` days ending ``today``, by series."""
    first = today - timedelta(days=days - 1)
    counts: Counter[tuple[date, str]] = Counter()
    for f in facts:
        day = f.received_at.astimezone(tz).date()
        if first <= day <= today:
            counts[(day, IGNORED if f.decision == "ignored" else f.category)] += 1
    span = tuple(first + timedelta(days=i) for i in range(days))
    return Chart(days=span, series=SERIES, counts=tuple(tuple(counts[(d, s)] for s in SERIES) for d in span))


def chart_svg(chart: Chart, width: int = 640, height: int = 230) -> str:
    """Stacked daily bars, a legend and the peak on the y axis, as an inline SVG document.

    Every bar segment is a ``rect`` with ``class="bar"`` and ``data-day``,
    ``data-series`` and ``data-count`` attributes, so the chart can be read
    back (and tested) without guessing from pixels.
    """
    left, right, top, bottom = 40, 130, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    band = plot_w / max(1, len(chart.days))
    scale = plot_h / max(1, chart.peak)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Messages per day, last {len(chart.days)} days" '
        'font-family="sans-serif" font-size="10">',
        f"<title>Messages per day, last {len(chart.days)} days</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#555"/>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="peak">{chart.peak}</text>',
    ]
    for d, day in enumerate(chart.days):
        x = left + d * band + band * 0.15
        y = float(top + plot_h)
        for s, name in enumerate(chart.series):
            count = chart.counts[d][s]
            if not count:
                continue
            h = count * scale
            y -= h
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{band * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS.get(name, "#999")}" data-day="{day.isoformat()}" '
                         f'data-series="{html.escape(name)}" data-count="{count}"/>')
        parts.append(f'<text x="{x + band * 0.35:.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                     f"{day:%d/%m}</text>")
    for s, name in enumerate(chart.series):
        y = top + s * 16
        parts.append(f'<rect x="{width - right + 12}" y="{y}" width="10" height="10" '
                     f'fill="{COLORS.get(name, "#999")}"/>')
        parts.append(f'<text x="{width - right + 26}" y="{y + 9}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def chart_text(chart: Chart, width: int = 40) -> tuple[str, ...]:
    """The same chart for the plain-text part: one bar of blocks per day."""
    scale = width / max(1, chart.peak)
    lines = []
    for d, day in enumerate(chart.days):
        total = chart.total(d)
        detail = ", ".join(f"{s} {n}" for s, n in zip(chart.series, chart.counts[d], strict=True) if n)
        bar = "█" * round(total * scale) if total else ""
        lines.append(f"{day:%a %d/%m}  {bar:<{width}}  {total:>4}{'  (' + detail + ')' if detail else ''}")
    return tuple(lines)


# --------------------------------------------------------------------------
# Periods


def digest_period(now: datetime, settings: Settings, calendar: ServiceCalendar) -> str | None:
    """The period due at ``now``: today (local), once ``[digest] time`` has passed on an opening day."""
    local = now.astimezone(settings.service_hours.timezone)
    if not calendar.is_opening_day(local.date()) or local.time() < settings.digest.time:
        return None
    return local.date().isoformat()


def next_digest_at(now: datetime, settings: Settings, calendar: ServiceCalendar,
                   sent: Callable[[str], bool]) -> datetime | None:
    """When the next digest is due: today's if not sent yet (possibly overdue), else the next opening day's."""
    if not settings.digest.recipients:
        return None
    tz = settings.service_hours.timezone
    today = now.astimezone(tz).date()
    for offset in range(400):
        day = today + timedelta(days=offset)
        if calendar.is_opening_day(day) and not sent(day.isoformat()):
            return datetime.combine(day, settings.digest.time, tzinfo=tz)
    return None


def last_digest_at(store: Store) -> datetime | None:
    """When the last digest was recorded (its period's row), if ever."""
    return max((e.updated_at for e in store.states(DIGEST_PREFIX)), default=None)


# --------------------------------------------------------------------------
# Reading the store


def build_digest(store: Store, settings: Settings, now: datetime, since: datetime) -> DigestContent:
    """Everything the digest shows, read from the store at ``now``, news since ``since``."""
    tz = settings.service_hours.timezone
    today = now.astimezone(tz).date()
    new, ignored, followups = new_tickets(store.message_counts(since, now))
    open_tickets = store.queue(TicketState.OPEN, limit=1_000_000)
    chart_start = datetime.combine(today - timedelta(days=CHART_DAYS - 1), datetime.min.time(), tzinfo=tz)
    trouble = store.outbox_trouble(since, now)
    quarantine = (*store.quarantine_list(QuarantineState.QUARANTINED), *store.quarantine_list(QuarantineState.RETRY))
    return DigestContent(
        helpdesk_name=settings.helpdesk.name, period=today.isoformat(), since=since, until=now, timezone=tz,
        new=new, ignored=ignored, followups=followups,
        ignored_by_kind=ignored_by_kind(store.events_of_kind(EventKind.IGNORED, since, now)),
        waiting=waiting_groups(open_tickets), oldest=oldest_open(open_tickets, now), review=to_review(open_tickets),
        refused=refused_attempts(store.messages_recorded(since, now, decision="rejected")),
        quarantined=quarantine_lines(sorted(quarantine, key=lambda e: e.id)),
        held=reply_lines(r for r in trouble if r.state is OutboxState.HELD),
        failed=reply_lines(r for r in trouble if r.state is OutboxState.FAILED),
        retrying=reply_lines(r for r in store.outbox(OutboxState.PENDING) if r.attempts > 0),
        chart=chart_of(store.messages_recorded(chart_start.astimezone(UTC), now), today, tz),
        channels=tuple(ChannelLine(t.reference, t.channel, t.category, t.decision, t.requester, t.received_at)
                       for t in store.channel_tickets(since, now)),
        pin_failures=tuple(PinFailureLine(f.at, clean_line(f.administration, 80), f.channel,
                                          clean_line(f.client, 100))
                           for f in store.pin_failures(since) if f.at < now),
        undelivered=undelivered_lines(store.events_of_kind(EventKind.UNDELIVERED, since, now)),
        not_sendable=not_sendable_lines(store.events_of_kind(EventKind.NOT_SENT, since, now)),
    )


# --------------------------------------------------------------------------
# Rendering


class DigestRenderer:
    """Compiles the digest templates once; renders text, HTML and the e-mail."""

    def __init__(self, templates_dir: Path, timezone: tzinfo) -> None:
        self._tz = timezone
        env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(templates_dir)),
                                        jinja2.FileSystemLoader(str(DEFAULT_TEMPLATES))]),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False,
                                                default=False),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, auto_reload=False,
        )
        env.filters["when"] = lambda moment: when(moment, timezone)
        env.filters["age"] = age
        try:
            self._text, self._html = (env.get_template(name) for name in TEMPLATES)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"digest template in {templates_dir}: {exc}") from exc

    def text(self, content: DigestContent) -> str:
        return self._render(self._text, content, chart=chart_text(content.chart))

    def html(self, content: DigestContent) -> str:
        return self._render(self._html, content, chart=Markup(chart_svg(content.chart)))

    def _render(self, template: jinja2.Template, content: DigestContent, *, chart: object) -> str:
        try:
            return template.render(d=content, chart=chart, zone=str(content.since.astimezone(self._tz).tzname()))
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {template.name}: {exc}") from exc

    def mail(self, content: DigestContent, settings: Settings, now: datetime) -> OutgoingMail:
        """The digest as one multipart/alternative message to every ``[digest] recipients``."""
        recipients = settings.digest.recipients
        if not recipients:
            raise TemplateError("[digest] recipients is empty: nobody to send the digest to")
        message_id = make_message_id(settings.helpdesk.address,
                                     f"digest.{content.period}.{settings.helpdesk.ticket_prefix}")
        msg = EmailMessage(policy=policy.SMTP)
        try:
            msg["From"] = HeaderAddress(display_name=settings.helpdesk.name, addr_spec=settings.helpdesk.address)
            msg["To"] = [HeaderAddress(addr_spec=r) for r in recipients]
            msg["Subject"] = subject(content)
            msg["Date"] = format_datetime(now.astimezone(self._tz))
            msg["Message-ID"] = message_id
            msg["Auto-Submitted"] = "auto-generated"
            msg["X-Auto-Response-Suppress"] = "All"
            msg.set_content(self.text(content), subtype="plain", charset="utf-8", cte="quoted-printable")
            msg.add_alternative(self.html(content), subtype="html", charset="utf-8", cte="quoted-printable")
            data = msg.as_bytes()
        except (MessageError, ValueError, TypeError) as exc:
            raise TemplateError(f"cannot build the digest message: {exc}") from exc
        return OutgoingMail(kind="digest", message_id=message_id, envelope_from="", recipients=recipients, data=data)


def subject(content: DigestContent) -> str:
    return (f"{content.helpdesk_name}: digest {content.period} - {content.new_total} new, "
            f"{len(content.refused)} refused, {content.waiting_total} waiting, {len(content.quarantined)} quarantined")


# --------------------------------------------------------------------------
# Sending


def send_due_digest(store: Store, settings: Settings, now: datetime, *, renderer: DigestRenderer | None = None,
                    calendar: ServiceCalendar | None = None) -> bool:
    """Queue the digest of the period due at ``now`` unless it was sent; True when queued now."""
    if not settings.digest.recipients:
        return False
    period = digest_period(now, settings, calendar or ServiceCalendar(settings.service_hours))
    if period is None or store.get_state(DIGEST_PREFIX + period) is not None:
        return False
    since = last_digest_at(store) or now - timedelta(days=1)
    content = build_digest(store, settings, now, since)
    renderer = renderer or DigestRenderer(settings.templates.path, settings.service_hours.timezone)
    mail = renderer.mail(content, settings, now)
    if not store.record_digest(period, now, (mail,)):
        log.info("digest %s already sent", period)
        return False
    log.info("digest %s queued for %s: %d new, %d refused, %d quarantined", period,
             ", ".join(settings.digest.recipients), content.new_total, len(content.refused),
             len(content.quarantined), extra={"message_id": mail.message_id})
    return True

