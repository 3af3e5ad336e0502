"""The triage pipeline: one raw message in, one ``Disposition`` out.

The stages are a short explicit list, each a pure function over frozen
records: parse -> PEC -> screen -> classify -> word model -> authorize -> schedule. The daemon,
the dry-run CLI and the tests all go through ``Triager.triage``, so what the
CLI shows is exactly what the daemon does. ``triage`` adds what the database
needs (dedupe key, thread query) and stays pure, so a worker process runs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from maild import certified
from maild.authorizer import authorize, authorize_pec, authorize_role, resolve_administration
from maild.certified import PecRead
from maild.classifier import classify
from maild.hours import ServiceCalendar
from maild.mail.keys import dedupe_key
from maild.mail.parsing import parse_message
from maild.mail.pec import PecKind
from maild.mail.smime import OpenSSLVerifier, SignatureCheck, SignatureStatus, SignatureVerifier, check_signature
from maild.records import (
    Address,
    AuthDecision,
    Category,
    ChannelRequest,
    Classification,
    Decision,
    Disposition,
    ParsedMessage,
    PecSummary,
    RefusalCause,
    ScreenKind,
    ThreadQuery,
    pickled_by_fields,
)
from maild.responder import find_ticket_refs, make_message_id
from maild.rules import Rules, load_rules
from maild.rules.screening import ScreeningRules, load_screening
from maild.rules.wordmodel import Reading, WordModel, load_word_model, own_subject, sender_names
from maild.screener import screen, screen_pec_receipt
from maild.settings import RECEIVED_HEADER_LEAD, Administration, Settings


@dataclass(frozen=True, slots=True)
class Triager:
    """Everything triage needs, loaded once: settings, rules, calendar, screening data, the PEC signature verifier."""

    settings: Settings
    rules: Rules
    calendar: ServiceCalendar
    screening: ScreeningRules
    verifier: SignatureVerifier | None = None
    """Checks PEC signatures against ``[pec] ca_file``; None without one (no envelope then authorizes)."""
    word_model: WordModel | None = None
    """Reads a privileged request the rules found no frame of (see ``maild.rules.wordmodel``)."""
    own_addresses: frozenset[str] = field(init=False)
    """Every address of the help desk itself, lower case: the loop guard (worked out once, not per message)."""

    def __post_init__(self) -> None:
        aliases = (a for adm in self.settings.administrations for a in adm.addresses)
        own = frozenset(a.lower() for a in (self.settings.helpdesk.address, *aliases, *self.settings.pec.addresses))
        object.__setattr__(self, "own_addresses", own)

    @classmethod
    def from_settings(cls, settings: Settings, *, compiled: bool = True) -> Triager:
        """``compiled``: the rules' templates now, else on first use (see ``Rules.compile``)."""
        rules = load_rules(settings.triage.rules, compiled=compiled)
        verifier = OpenSSLVerifier(settings.pec.ca_file) if settings.pec.ca_file is not None else None
        word_model = load_word_model(settings.triage.word_model) if settings.triage.word_model else None
        return cls(settings, rules, ServiceCalendar(settings.service_hours), load_screening(), verifier, word_model)

    def read(self, raw: bytes) -> tuple[ParsedMessage, PecRead | None]:
        """Parse ``raw`` and read it as PEC: the record to decide on, and the PEC reading if it is PEC."""
        message = parse_message(raw, self.settings.limits)
        pec = certified.read(raw, message, self.settings.limits)
        return (pec.message if pec else message), pec

    def triage(self, raw: bytes, *, now: datetime, received_at: datetime | None = None) -> Disposition:
        """Run every stage on ``raw``; ``received_at`` overrides the headers."""
        message, pec = self.read(raw)
        return self.decide(message, received_at=received_at or received_time(message, now), pec=pec)

    def decide(self, message: ParsedMessage, *, received_at: datetime, pec: PecRead | None = None,
               received_why: str = "") -> Disposition:
        """The stages after parsing, for callers that already hold the record (and its PEC reading);
        ``received_why`` says where ``received_at`` came from."""
        pec_reasons = (certified.describe(pec.facts),) if pec else ()
        if pec is not None and pec.facts.kind is PecKind.RECEIPT:
            screened = screen_pec_receipt(pec.facts)
        else:
            screened = screen(message, self.own_addresses, self.screening, dict(message.screened_fields))
        if not screened.human:
            return self._disposition(message, Category.OTHER, Decision.IGNORED, None, "it", received_at,
                                     (*pec_reasons, *screened.reasons), scheduled=False,
                                     pec=certified.summary(pec.facts, None) if pec else None,
                                     screen_kind=screened.kind)
        classified = classify(message, self.rules, self.settings.triage.default_language)
        administration, adm_reason = resolve_administration(message, self.settings.administrations)
        reasons = (*pec_reasons, *screened.reasons, *classified.reasons, adm_reason)
        category, decision = classified.category, Decision.ACCEPTED
        check = None
        refusal = None
        review = classified.review
        asked = classified.category if classified.category.privileged else classified.privileged_evidence
        reading = None if asked is not None or classified.privileged_topic else self._word_reading(message, classified)
        if reading is not None:
            asked, review = reading.category, reading.reason
            reasons = (*reasons, reading.reason)
        if asked is not None:
            if pec is None:
                auth = authorize(message, administration, self.settings.helpdesk.trusted_authserv_ids)
            else:
                auth, check = self._authorize_pec(pec, administration)
                if auth.authorized:
                    message = certified.certified(message, pec.facts)
            reasons = (*reasons, *auth.reasons)
            if not auth.authorized:
                category, decision, refusal = asked, Decision.REJECTED, auth.cause
                if asked is not classified.category:
                    reasons = (*reasons, f"fail closed: {asked.value} asked for by a sender not authorized for it, "
                                         f"refused rather than accepted as {classified.category.value}")
        name = administration.name if administration else None
        if received_why:
            reasons = (*reasons, received_why)
        return self._disposition(message, category, decision, name, classified.language,
                                 received_at, reasons, scheduled=True, review=review,
                                 pec=certified.summary(pec.facts, check) if pec else None, refusal=refusal)

    def _word_reading(self, message: ParsedMessage, classified: Classification) -> Reading | None:
        """The word model's privileged reading of a message the rules read no privileged frame in, if any."""
        if self.word_model is None:
            return None
        return self.word_model.reading(own_subject(message.subject, self.rules.reply_prefix), classified.own_text,
                                       sender_names(message.from_addresses))

    def _authorize_pec(self, pec: PecRead, administration: Administration | None
                       ) -> tuple[AuthDecision, SignatureCheck | None]:
        """Only an envelope can certify: an anomaly's signature is not worth checking."""
        if pec.facts.kind is not PecKind.ENVELOPE:
            return authorize_pec(pec.facts, _UNCHECKED, administration, self.own_addresses), None
        check = check_signature(pec.raw, pec.facts, self.verifier)
        return authorize_pec(pec.facts, check, administration, self.own_addresses), check

    def decide_request(self, request: ChannelRequest) -> tuple[Disposition, AuthDecision]:
        """The stages after parsing for a request from the web form, the phone or a fax.

        The same classifier reads the text; the type the requester chose is
        kept unless the text plainly asks for something privileged it did not
        choose (the more privileged wins, as for e-mail). The role the PIN
        opened (or the operator stated) authorizes instead of the mail
        server's Authentication-Results.
        """
        administration = next(a for a in self.settings.administrations if a.name == request.administration)
        message = request_message(request, self.settings.helpdesk.address)
        classified = classify(message, self.rules, self.settings.triage.default_language)
        category, why = _chosen_or_privileged(request.chosen, classified.category)
        auth = authorize_role(category, request.role, administration, request.role_reason)
        reasons = (f"channel: {request.channel.value} ({request.origin})", *classified.reasons, why,
                   f"administration: {administration.name} (chosen on the {request.channel.value} request)",
                   *auth.reasons)
        decision = Decision.ACCEPTED if auth.authorized else Decision.REJECTED
        d = self._disposition(message, category, decision, administration.name, classified.language,
                              request.received_at, reasons, scheduled=True, refusal=auth.cause)
        return d, auth

    def _disposition(
        self, message: ParsedMessage, category: Category, decision: Decision, administration: str | None,
        language: str, received_at: datetime, reasons: tuple[str, ...], *, scheduled: bool,
        pec: PecSummary | None = None, review: str = "", refusal: RefusalCause | None = None,
        screen_kind: ScreenKind | None = None,
    ) -> Disposition:
        # Refused attempts are taken in too: a person reviews every security event.
        take_in = self.calendar.take_in(received_at) if scheduled else None
        if take_in is not None:
            reasons = (*reasons, *self.calendar.explain(received_at, take_in))
        return Disposition(
            message=message, category=category, decision=decision, administration=administration,
            priority=self.settings.priorities.of(category), language=language,
            received_at=received_at, take_in=take_in, reasons=reasons, pec=pec, review=review,
            refusal=refusal if decision is Decision.REJECTED else None,
            screen_kind=screen_kind,
        )


def request_message(request: ChannelRequest, helpdesk_address: str) -> ParsedMessage:
    """The request as the stages read a message: one sender, its subject and text, nothing automatic."""
    return ParsedMessage(
        message_id=make_message_id(helpdesk_address, f"{request.channel.value}.{request.request_id}"),
        from_addresses=(Address(request.name, request.requester),), from_ambiguous=False, reply_to=(), sender=(),
        to=(), cc=(), subject=request.subject, date=request.received_at, received_at=request.received_at,
        auth_results=(), return_path=None, auto_submitted=None, precedence=None, x_autoreply=False,
        content_type="text/plain", report_type=None, in_reply_to=(), references=(),
        language_hints=(request.language,) if request.language else (), body_text=request.text,
        body_from_html=False, attachments=(), defects=(), size=len(request.text.encode("utf-8")),
    )


def _chosen_or_privileged(chosen: Category | None, classified: Category) -> tuple[Category, str]:
    """The chosen type, unless the text asks for a privileged one that was not chosen."""
    if chosen is None:
        return classified, f"category {classified.value}: read from the text (no type was chosen)"
    if classified.privileged and classified is not chosen and not chosen.privileged:
        return classified, f"category {classified.value}: the text asks for it, more privileged than " \
                           f"the {chosen.value} chosen"
    if chosen.privileged and classified.privileged and classified is not chosen:
        return chosen, f"category {chosen.value}: chosen (the text reads as {classified.value}, also privileged)"
    return chosen, f"category {chosen.value}: chosen by the requester (the text reads as {classified.value})"
_UNCHECKED = SignatureCheck(SignatureStatus.NOT_CHECKED, "PEC signature not checked")


def received_time(message: ParsedMessage, now: datetime) -> datetime:
    """The topmost Received date, else Date, else ``now``: the dry run's contract, for a file on its own."""
    return message.received_at or message.date or now


def arrival_time(message: ParsedMessage, arrived_at: datetime | None, now: datetime,
                 trusted_hosts: Iterable[str]) -> tuple[datetime, str]:
    """The daemon's received time and why: the mailbox server's, or our receiving server's stamp.

    The sender writes every header but the ones our servers add, so only the topmost Received
    header added by a trusted receiving server counts, and only when it is at most
    ``RECEIVED_HEADER_LEAD`` earlier than the mailbox server's time (the queue between them) and
    not in the future: a later stamp (clocks apart) moves a request back in the queue, never ahead.
    """
    server = min(arrived_at, now) if arrived_at is not None else now
    stamped = message.received_at
    if (stamped is not None and message.received_by in {h.lower() for h in trusted_hosts}
            and server - RECEIVED_HEADER_LEAD <= stamped <= now):
        return stamped, f"received time: the Received header added by {message.received_by}"
    if arrived_at is None:
        return server, "received time: when maild read it (the mailbox gave no time)"
    return server, "received time: when the mailbox server took it in"


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Triaged:
    """One message through the stages before the database; plain frozen records, so it can
    cross from a worker process (``maild.daemon.processes``)."""

    dedupe_key: str
    disposition: Disposition
    thread_query: ThreadQuery | None


def triage(raw: bytes, now: datetime, triager: Triager, settings: Settings,
           arrived_at: datetime | None = None) -> Triaged:
    """Dedupe key, parse, triage and thread query of one message: pure but for a PEC signature check, may raise.

    ``arrived_at`` is when the mailbox server took the message in (``Incoming.arrived_at``).
    """
    message, pec = triager.read(raw)
    received_at, why = arrival_time(message, arrived_at, now, settings.helpdesk.trusted_authserv_ids)
    d = triager.decide(message, received_at=received_at, pec=pec, received_why=why)
    return Triaged(dedupe_key(raw), d, thread_query(d, settings.helpdesk.ticket_prefix))


def thread_query(d: Disposition, ticket_prefix: str) -> ThreadQuery | None:
    """What the message may follow up: None when nothing (ignored mail never follows anything up)."""
    if d.decision is Decision.IGNORED or not d.message.from_addresses:
        return None
    message = d.message
    ids = (*message.in_reply_to, *reversed(message.references))
    tags = find_ticket_refs(message.subject, ticket_prefix)
    if not ids and not tags:
        return None
    return ThreadQuery(ids, tags, message.from_addresses[0].key)
