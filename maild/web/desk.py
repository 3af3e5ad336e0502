"""A request from the web form, the phone or a fax, through the same stages and store as an e-mail.

The PIN is checked here and forgotten: only the role it opened goes on. A
wrong PIN is a security event, counted per Administration and per client
(address or operator), and over the limit the Administration (or the client)
is locked out for the rest of the hour, whatever PIN comes next: with
four-digit PINs, guessing must end long before the ten thousandth try.

The request is recorded by the store's intake unit of work (message, ticket,
events and acknowledgment in one transaction), keyed by the channel and the
form's request id: a form sent twice opens one ticket and shows it twice.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import jinja2

from maild.errors import TemplateError
from maild.logs import context
from maild.pins import pin_role
from maild.pipeline import Triager
from maild.records import (
    Channel,
    ChannelRequest,
    Decision,
    Intake,
    OutgoingMail,
    PinFailureFact,
    PinRole,
    TicketRef,
    UnsentReply,
)
from maild.responder import NAME_LIMIT, SUBJECT_LIMIT, Responder, clean_line, make_message_id, replies_for
from maild.settings import DEFAULT_TEMPLATES, Administration, Settings
from maild.store import Store

log = logging.getLogger("maild.web")

LOCKOUT_WINDOW = timedelta(hours=1)
NOTICE_TEMPLATES = ("pin_notice.it.txt.j2", "pin_notice.en.txt.j2")


@dataclass(frozen=True, slots=True)
class Locked:
    """Too many wrong PINs: nothing is checked until ``until``; ``who`` says whose limit was reached."""

    until: datetime
    who: str
    """"administration" or "client"."""


@dataclass(frozen=True, slots=True)
class PinCheck:
    """The role a PIN opened; None with ``locked`` None: a wrong PIN (recorded)."""

    role: PinRole | None
    locked: Locked | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """What became of a request: its ticket, and whether it was refused or a repeat of one recorded before."""

    reference: str
    decision: Decision
    category: str
    take_in_at: datetime
    in_hours: bool
    duplicate: bool = False


def locked_until(times: Sequence[datetime], limit: int, window: timedelta = LOCKOUT_WINDOW) -> datetime | None:
    """When ``times`` (the failures of the last ``window``, oldest first) fall below ``limit``; None: not locked."""
    if len(times) < limit:
        return None
    return times[len(times) - limit] + window


def new_request_id() -> str:
    """A request id the form carries, so a second submit of the same page is recognised."""
    return uuid.uuid4().hex


class RequestDesk:
    """Takes requests from the channels that are not e-mail: PIN checks, lockout, the intake."""

    def __init__(self, settings: Settings, triager: Triager, responder: Responder, store: Store) -> None:
        """Load the notice templates now, so a broken one stops the start instead of a failure later."""
        self.settings = settings
        self._triager = triager
        self._responder = responder
        self._store = store
        env = jinja2.Environment(
            loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(Path(settings.templates.path) / "web")),
                                        jinja2.FileSystemLoader(str(DEFAULT_TEMPLATES / "web"))]),
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
        )
        try:
            self._notices = {name: env.get_template(name) for name in NOTICE_TEMPLATES}
        except jinja2.TemplateError as exc:
            raise TemplateError(f"web notice template: {exc}") from exc

    def __enter__(self) -> RequestDesk:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._store.close()

    def administration(self, name: str) -> Administration | None:
        return next((a for a in self.settings.administrations if a.name == name), None)

    def lockout(self, administration: str, client: str, now: datetime) -> Locked | None:
        """Whether PINs for ``administration`` or from ``client`` are refused unread right now."""
        limits = self.settings.limits
        since = now - LOCKOUT_WINDOW
        by_admin = [f.at for f in self._store.pin_failures(since, administration=administration)]
        until = locked_until(by_admin, limits.max_pin_failures_per_administration_per_hour)
        if until is not None:
            return Locked(until, "administration")
        by_client = [f.at for f in self._store.pin_failures(since, client=client)]
        until = locked_until(by_client, limits.max_pin_failures_per_client_per_hour)
        return Locked(until, "client") if until is not None else None

    def check_pin(self, administration: Administration, pin: str, client: str, channel: Channel,
                  now: datetime) -> PinCheck:
        """The role ``pin`` opens; a wrong one is recorded, with a notice to the referente."""
        locked = self.lockout(administration.name, client, now)
        if locked is not None:
            log.warning("PIN refused unread: %s locked out until %s", locked.who, locked.until.isoformat(),
                        extra=context(None, administration=administration.name, client=client))
            return PinCheck(None, locked)
        role = pin_role(pin, administration.pin_referente_hash, administration.pin_users_hash)
        if role is not None:
            return PinCheck(role)
        fact = PinFailureFact(administration.name, client, channel.value, now)
        self._store.record_pin_failure(fact, self._failure_notice(administration, fact))
        log.warning("wrong PIN", extra=context(None, administration=administration.name, client=client,
                                               channel=channel.value))
        return PinCheck(None, self.lockout(administration.name, client, now))

    def submit(self, request: ChannelRequest, now: datetime) -> Submitted:
        """Triage ``request`` and record it with its ticket and replies in one transaction (once)."""
        d, auth = self._triager.decide_request(request)
        key = f"{request.channel.value}:{request.request_id}"
        token = hashlib.sha256(key.encode("ascii")).hexdigest()
        intake = Intake(dedupe_key=key, source_id=f"{request.channel.value}:{request.origin}",
                        raw=request_raw(request, d.message.message_id, self.settings.helpdesk.address),
                        disposition=d, now=now, auth=auth, channel=request.channel)

        def render(ticket: TicketRef | None) -> tuple[OutgoingMail | UnsentReply, ...]:
            if ticket is None:
                return ()
            return replies_for(d, ticket.reference, token, now, self._responder, self.settings,
                               self._triager.screening, followup=False)

        result = self._store.record_intake(intake, render)
        if result.duplicate:
            known = self._store.ticket_of_key(key)
            if known is None:
                raise TemplateError(f"request {key} is recorded without a ticket")
            return Submitted(known.reference, Decision(known.decision), known.category, known.take_in_at,
                             known.in_hours, duplicate=True)
        assert result.ticket is not None and d.take_in is not None  # a request always opens a ticket
        log.info("new %s %s %s take-in %s, %d repl%s queued", request.channel.value, d.decision.value,
                 d.category.value, d.take_in.take_in_at.isoformat(), len(result.outbox_ids),
                 "y" if len(result.outbox_ids) == 1 else "ies",
                 extra=context(d.message.message_id, result.ticket.reference, source_id=intake.source_id))
        return Submitted(result.ticket.reference, d.decision, d.category.value, d.take_in.take_in_at,
                         d.take_in.in_hours)

    def _failure_notice(self, administration: Administration, fact: PinFailureFact) -> OutgoingMail:
        """The referente's notice of a wrong PIN; the outbox brakes it like every notice to a referente."""
        body = self._notices["pin_notice.it.txt.j2"].render(
            helpdesk_name=self.settings.helpdesk.name, administration=clean_line(fact.administration, NAME_LIMIT),
            client=clean_line(fact.client, 100), channel=fact.channel,
            at=fact.at.astimezone(self.settings.service_hours.timezone).strftime("%Y-%m-%d %H:%M"),
            limit=self.settings.limits.max_pin_failures_per_administration_per_hour,
        )
        message_id = make_message_id(self.settings.helpdesk.address, f"pin.{uuid.uuid4().hex}")
        return self._responder.notice(
            kind="referente_notice", recipient=administration.referente, language="it", message_id=message_id,
            subject=f"[{self.settings.helpdesk.name}] PIN errato per {fact.administration}", body=body, now=fact.at)


def request_raw(request: ChannelRequest, message_id: str, helpdesk_address: str) -> bytes:
    """The request written as a message, kept as its raw bytes (``ticket show`` reads them); no PIN in it."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = HeaderAddress(display_name=clean_line(request.name, NAME_LIMIT), addr_spec=request.requester)
    msg["To"] = helpdesk_address
    msg["Subject"] = clean_line(request.subject, SUBJECT_LIMIT)
    msg["Date"] = format_datetime(request.received_at)
    msg["Message-ID"] = message_id
    msg["X-Maild-Channel"] = request.channel.value
    msg["X-Maild-Origin"] = clean_line(request.origin, 100)
    msg["X-Maild-Administration"] = clean_line(request.administration, NAME_LIMIT)
    msg["X-Maild-Chosen-Category"] = request.chosen.value if request.chosen else "-"
    msg["X-Maild-Role"] = request.role.value
    msg.set_content(request.text)
    return msg.as_bytes()
