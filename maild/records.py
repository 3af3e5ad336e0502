"""Frozen records: what the pipeline stages pass along, and what goes in and out of the store.

Every stage takes and returns these values and nothing mutable, so a stage can
be tested alone, replayed in a dry run, and stored as is by the daemon; the
store hands out these records, never ORM objects or dicts.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_Record = TypeVar("_Record", bound="DataclassInstance")


class Category(enum.StrEnum):
    """What a request asks for (the corpus README is the labelling spec)."""

    ANAGRAFICA = "anagrafica"
    PASSWORD_RESET = "password_reset"
    LIFECYCLE = "lifecycle"
    OTHER = "other"

    @property
    def privileged(self) -> bool:
        return self in PRIVILEGED


PRIVILEGED = frozenset({Category.PASSWORD_RESET, Category.LIFECYCLE})


class Channel(enum.StrEnum):
    """How a request reached the help desk."""

    EMAIL = "email"
    WEB = "web"
    PHONE = "phone"
    FAX = "fax"


class PinRole(enum.StrEnum):
    """Whose PIN was given: the referente's opens every category, the users' only the ordinary ones."""

    REFERENTE = "referente"
    USERS = "users"


def pickled_by_fields(cls: type[_Record]) -> type[_Record]:
    """Make ``cls`` (a dataclass) pickle as a call of ``cls`` with its field values in order.

    Every message's triage result crosses from the worker to the daemon, and dataclasses' own
    ``__getstate__``/``__setstate__`` call ``fields()`` per object and set each slot one by one.
    Only for classes that ``__init__`` rebuilds exactly: every field an ``__init__`` parameter,
    no ``__post_init__``.
    """
    names = tuple(f.name for f in fields(cls))
    if len(names) < 2 or any(not f.init for f in fields(cls)) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} is not rebuilt exactly by calling it with two or more field values")
    values: Callable[[Any], tuple[object, ...]] = operator.attrgetter(*names)  # a tuple: two names or more

    def reduce(self: _Record) -> tuple[type[_Record], tuple[object, ...]]:
        return cls, values(self)

    setattr(cls, "__reduce__", reduce)  # noqa: B010 (mypy refuses assigning to a method)
    return cls


class Decision(enum.StrEnum):
    """What maild does with a message."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IGNORED = "ignored"


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: the display name as decoded, and the addr-spec.

    ``addr`` keeps the local part as written and lower-cases the domain;
    comparisons that matter (authorization, loop guard) use ``key``.
    """

    name: str
    addr: str

    @property
    def key(self) -> str:
        """Case-insensitive comparison key for the whole address."""
        return self.addr.lower()

    @property
    def domain(self) -> str:
        return self.addr.rpartition("@")[2].lower()


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Everything the later stages need from one raw message, decoded once.

    ``from_addresses`` holds every address of every From header. When two
    readings of the From header could disagree (a display name that is itself
    an address, comments other than the plain name after one bare address,
    several From headers), ``from_ambiguous`` is set and
    the authorizer treats the message as not having exactly one sender.
    """

    message_id: str
    from_addresses: tuple[Address, ...]
    from_ambiguous: bool
    reply_to: tuple[Address, ...]
    sender: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    date: datetime | None
    received_at: datetime | None
    """Date of the topmost Received header, when it has a readable one."""
    auth_results: tuple[str, ...]
    """Authentication-Results header values, topmost first, unfolded."""
    return_path: str | None
    """None when absent; "" when present and empty (``<>``)."""
    auto_submitted: str | None
    precedence: str | None
    x_autoreply: bool
    """True when X-Autoreply or X-Autorespond is present."""
    content_type: str
    """Top-level MIME type, lower case (``multipart/report``)."""
    report_type: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    language_hints: tuple[str, ...]
    """Content-Language / Accept-Language values, lower case, in order."""
    body_text: str
    body_from_html: bool
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    size: int
    received_by: str = ""
    """The host that added the topmost Received header (its ``by``), lower case; "" when unreadable."""
    screened_fields: tuple[tuple[str, str], ...] = ()
    """The few other header fields the screener reads (List-Id, X-Failed-Recipients...): lower-case
    name and the first value, decoded and cut (``maild.mail.parsing.headers.SCREENED_FIELDS``)."""
    link_texts: tuple[str, ...] = ()
    """The shown texts of the links of a body read from HTML (``body_from_html``), in order, cut."""


class ScreenKind(enum.StrEnum):
    """Why a message is automatic, in one word: the digest and stats split the ignored mail by it."""

    AUTO_REPLY = "auto_reply"
    """Out-of-office and other automatic answers, and automatic mail of no more specific kind."""
    BOUNCE = "bounce"
    RECEIPT = "receipt"
    """Read and delivery receipts (MDN, PEC receipts)."""
    LIST = "list"
    """Mailing-list and bulk mail, and list managers' notices."""
    FEEDBACK_REPORT = "feedback_report"
    """Abuse and feedback-loop reports (RFC 5965, and providers' older shapes)."""
    OWN_MAIL = "own_mail"
    SPAM = "spam"
    """Mail a spam filter on its way in marked as spam (X-Spam-Flag, X-Spam-Status...)."""


@dataclass(frozen=True, slots=True)
class ScreenResult:
    """Whether a message is a human request at all."""

    human: bool
    reasons: tuple[str, ...]
    kind: ScreenKind | None = None
    """None for human mail; for automatic mail, the kind of its most specific sign."""


@dataclass(frozen=True, slots=True)
class Classification:
    category: Category
    language: str
    """"it" or "en": the language the requester wrote in."""
    reasons: tuple[str, ...]
    text: str = ""
    """The text that was classified, after quotes and signatures were removed."""
    review: str = ""
    """Why an operator should check the category first (narrow margin, subject alone...); "" when clear."""
    privileged_evidence: Category | None = None
    """A privileged category asked for below the threshold: authorization still decides (fail closed)."""
    privileged_topic: bool = False
    """A privileged frame was read in any act (asked, negated, only asked about): the rules saw the topic."""
    own_text: str = ""
    """The sender's own words: ``text`` without the quote adopted or answered (what the word model reads)."""


class RefusalCause(enum.StrEnum):
    """Why a privileged request was refused, in one word: the referente's notice says it in a sentence."""

    FROM_AMBIGUOUS = "from_ambiguous"
    FROM_NOT_ONE = "from_not_one"
    NO_ADMINISTRATION = "no_administration"
    NOT_AUTHORIZED_SENDER = "not_authorized_sender"
    NOT_CHECKED = "not_checked"
    """No Authentication-Results of a trusted receiving server."""
    DMARC_FAILED = "dmarc_failed"
    NOT_ALIGNED = "not_aligned"
    """Neither DMARC pass nor a DKIM pass aligned with the From domain."""
    PEC_ANOMALY = "pec_anomaly"
    PEC_SIGNATURE = "pec_signature"
    PEC_NO_SENDER = "pec_no_sender"
    PEC_NOT_AUTHORIZED = "pec_not_authorized"
    PEC_NOT_ADDRESSED = "pec_not_addressed"
    USERS_ROLE = "users_role"
    """A privileged request made with the users' PIN (or role)."""


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """Outcome of the authorization stage: a value, never an exception."""

    authorized: bool
    reasons: tuple[str, ...]
    cause: RefusalCause | None = None
    """The first reason of a refusal, as a word; None when authorized."""


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class TakeIn:
    """When the help desk takes a request in."""

    take_in_at: datetime
    in_hours: bool


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class PecSummary:
    """What maild made of a PEC message: its kind, what its signature proved, who it certifies."""

    kind: str
    """``envelope``, ``anomaly`` or ``receipt``."""
    receipt_type: str | None
    signature: str
    """A ``maild.mail.smime.SignatureStatus`` value; ``not_checked`` when no trust decision was needed."""
    certified_sender: str | None
    """Only when the signature is valid and daticert, the envelope and the inner From agree."""
    provider: str
    refers_to: str | None
    reply_to: str | None = None
    """Where replies go (risposte, Reply-To, the sender): never the provider's address."""
    delivery: str | None = None
    """For a receipt: what it says happened to the message it refers to."""
    delivered: bool = True
    """False for a receipt telling that a message was not accepted or not delivered."""


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class Disposition:
    """The whole triage outcome for one message: what the daemon will do."""

    message: ParsedMessage
    category: Category
    decision: Decision
    administration: str | None
    priority: int
    language: str
    received_at: datetime
    take_in: TakeIn | None
    """None for ignored messages: nothing is taken in."""
    reasons: tuple[str, ...] = field(default_factory=tuple)
    review: str = ""
    """Why an operator should look at this one first; "" when triage was sure."""
    pec: PecSummary | None = None
    """None for ordinary mail."""
    refusal: RefusalCause | None = None
    """Why a privileged request was refused; None unless the decision is ``rejected``."""
    screen_kind: ScreenKind | None = None
    """For ignored mail, what kind of automatic mail it is (the digest and the stats split by it)."""

    @property
    def privileged(self) -> bool:
        return self.category.privileged


@dataclass(frozen=True, slots=True)
class ChannelRequest:
    """A request that did not come by e-mail: typed into the web form, or by an operator (phone, fax).

    ``requester`` is where the answer goes, already chosen by the PIN's rules
    (``maild.authorizer.answer_address``); ``role`` is what the PIN opened or
    the operator stated, and ``role_reason`` says which. ``origin`` is the
    client's address (web) or the operator's login. ``request_id`` is the
    form's own (a double submit opens one ticket). The PIN itself is never here.
    """

    request_id: str
    channel: Channel
    administration: str
    requester: str
    name: str
    subject: str
    text: str
    chosen: Category | None
    """The type the requester chose; None when nobody chose (an operator may leave it to the classifier)."""
    role: PinRole
    role_reason: str
    origin: str
    received_at: datetime
    language: str = ""
    """The language of the form ("it", "en"), a hint for the classifier; "" when unknown."""


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A rendered message ready for the outbox.

    ``envelope_from`` is "" for automatic replies (RFC 3834: null sender).
    """

    kind: str
    """"ack", "refusal", "referente_notice", "resolution", "digest"."""
    message_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    first_attempt: bool = False
    """True only when the outbox knows no attempt to send this Message-ID was made before (its
    first claim), so no earlier copy can exist and a transport need not look for one. False, the
    default, means "not known": a transport that replaces earlier copies must look."""


@dataclass(frozen=True, slots=True)
class UnsentReply:
    """A reply maild did not queue because its recipient cannot or must not be written to: the ticket says why."""

    kind: str
    """As ``OutgoingMail.kind``."""
    recipient: str
    """As the message gave it ("" when it gave none)."""
    reason: str

    @property
    def description(self) -> str:
        """What ``ticket show`` and the digest print: "acknowledgment not sendable: …"."""
        return f"{_REPLY_WORDS.get(self.kind, self.kind)} not sendable: {self.reason}"


_REPLY_WORDS = MappingProxyType({"ack": "acknowledgment", "refusal": "refusal",
                                 "referente_notice": "notice to the referente"})


class MessageKind(enum.StrEnum):
    """What the intake did with one received message."""

    NEW = "new"
    FOLLOWUP = "followup"
    IGNORED = "ignored"
    REFUSED = "refused"
    """Not ignored, but no ticket was opened (a refusal may have been queued)."""


class TicketState(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    HELD = "held"
    FAILED = "failed"


class QuarantineState(enum.StrEnum):
    QUARANTINED = "quarantined"
    RETRY = "retry"
    """An operator asked for a retry; the daemon has not processed it yet."""
    RETRIED = "retried"
    RELEASED = "released"


class EventKind(enum.StrEnum):
    """Kinds written to the append-only event log."""

    RECEIVED = "received"
    SCREENED = "screened"
    CLASSIFIED = "classified"
    AUTHORIZED = "authorized"
    REJECTED = "rejected"
    IGNORED = "ignored"
    OPENED = "opened"
    """A ticket was opened (data: reference, take_in_at, in_hours)."""
    FOLLOWUP = "followup"
    QUEUED = "queued"
    """A reply entered the outbox (data: kind, message_id, recipients)."""
    ACKNOWLEDGED = "acknowledged"
    """An acknowledgment was accepted by the SMTP server."""
    SENT = "sent"
    """Any other reply was accepted by the SMTP server."""
    SEND_FAILED = "send_failed"
    """A transient failure; retried later."""
    FAILED = "failed"
    GIVEN_UP = "given_up"
    """A reply refused for now for longer than ``smtp.give_up_after_hours``: failed for good."""
    HELD = "held"
    """The per-sender reply brake held a reply back."""
    TAKEN_IN = "taken_in"
    QUARANTINED = "quarantined"
    RETRY_REQUESTED = "retry_requested"
    RETRIED = "retried"
    RELEASED = "released"
    RESOLVED = "resolved"
    REOPENED = "reopened"
    DIGEST = "digest"
    NOTE = "note"
    PIN_FAILED = "pin_failed"
    """A wrong PIN (web form or phone): a security event (data: administration, client, channel)."""
    DELIVERY = "delivery"
    """A PEC receipt for one of our replies: accepted by the provider, delivered (data: outcome, receipt)."""
    UNDELIVERED = "undelivered"
    """A PEC notice that one of our replies was not accepted or not delivered (data: outcome, receipt)."""
    NOT_SENT = "not_sent"
    """A reply was not queued: its recipient cannot or must not be written to (data: kind, recipient)."""


@dataclass(frozen=True, slots=True)
class TicketRef:
    """Enough of a ticket to thread to it and to render a reply about it."""

    id: int
    reference: str
    requester: str
    state: TicketState


Renderer = Callable[[TicketRef | None], tuple[OutgoingMail | UnsentReply, ...]]
"""Pure function giving the replies for one intake, called inside its transaction.

It gets the ticket (just opened, or the thread's ticket) or None when no
ticket is involved (a refused request that opens none). It is never called
for an ignored message: no reply may ever be queued for one.
"""


@dataclass(frozen=True, slots=True)
class Intake:
    """One received message and its triage, to be recorded in one transaction.

    ``dedupe_key`` comes from ``maild.mail.keys.dedupe_key(raw)``. With ``thread``
    set, the message is a follow-up of that ticket (no ticket is opened).
    Otherwise a ticket is opened when the decision is not ``ignored`` and
    ``disposition.take_in`` is set. The three stage results are optional and
    only add their reasons to the event log. ``quarantine_id`` names the
    quarantine entry this intake retries; it is marked retried in the same
    transaction. ``channel`` is how the request came (``ChannelRequest`` for
    the others than e-mail); the ticket and the message carry it.
    """

    dedupe_key: str
    source_id: str
    raw: bytes
    disposition: Disposition
    now: datetime
    thread: TicketRef | None = None
    screen: ScreenResult | None = None
    classification: Classification | None = None
    auth: AuthDecision | None = None
    quarantine_id: int | None = None
    channel: Channel = Channel.EMAIL


ReplyRenderer = Callable[[TicketRef | None, bool], tuple[OutgoingMail | UnsentReply, ...]]
"""``Renderer`` that is also told whether the message is a follow-up of its ticket (True)."""


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class ThreadQuery:
    """What a message may continue: its In-Reply-To/References and subject tags, and its sender.

    Resolved inside the intake transaction (``_BatchWriter.find_thread`` in
    ``maild.store.intake``): a follow-up of a message ahead of it in the same
    batch finds the ticket that message opened a moment earlier.
    """

    message_ids: tuple[str, ...]
    tags: tuple[str, ...]
    from_addr: str


@dataclass(frozen=True, slots=True)
class QueuedIntake:
    """One message of a batch for ``Store.record_intakes``: its intake, its thread query, its replies.

    ``intake.thread`` may already be resolved (then ``thread_query`` is None).
    """

    intake: Intake
    thread_query: ThreadQuery | None
    render: ReplyRenderer


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What ``record_intake`` did. ``duplicate``: nothing was written."""

    duplicate: bool
    message_id: int | None = None
    """Row id in ``messages``."""
    kind: MessageKind | None = None
    ticket: TicketRef | None = None
    opened: bool = False
    reopened: bool = False
    """A follow-up that reopened its resolved ticket."""
    outbox_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A claimed reply, leased to one sender until ``lease_until``."""

    id: int
    ticket_id: int | None
    kind: str
    message_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    attempts: int
    """Including the attempt this claim is for."""
    lease_owner: str
    lease_until: datetime
    queued_at: datetime
    """When the reply entered the outbox: a reply refused for now is given up on this long after it."""
    ticket: str | None = None
    """Reference of the ticket the reply is about, for log lines."""


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    id: int
    ticket_id: int | None
    kind: str
    message_id: str
    recipients: tuple[str, ...]
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    """The last refusal, or for a held reply the brake's reason."""
    created_at: datetime
    sent_at: datetime | None
    claimed_at: datetime | None = None
    released_at: datetime | None = None
    """When an operator released it from the per-sender brake, which then lets it pass."""
    ticket: str | None = None
    """Reference of its ticket, where the read joined it."""


@dataclass(frozen=True, slots=True)
class TakeInItem:
    ticket_id: int
    reference: str
    priority: int
    category: str
    administration: str | None
    received_at: datetime
    take_in_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    ticket_id: int | None
    message_id: int | None
    """Row id in ``messages``, not a Message-ID header."""
    outbox_id: int | None
    kind: str
    reasons: tuple[str, ...]
    data: tuple[tuple[str, str], ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class TicketSummary:
    id: int
    reference: str
    requester: str
    administration: str | None
    category: str
    decision: str
    priority: int
    language: str
    subject: str
    state: TicketState
    received_at: datetime
    take_in_at: datetime
    in_hours: bool
    taken_in_at: datetime | None
    resolved_at: datetime | None
    review: str | None = None
    """Why triage was unsure of the category (look at it first); None when it was sure."""
    channel: str = "email"


@dataclass(frozen=True, slots=True)
class PinFailureFact:
    """One wrong PIN as the digest and the lockout see it."""

    administration: str
    client: str
    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class MessageSummary:
    id: int
    message_id: str
    source_id: str
    from_addr: str
    subject: str
    kind: MessageKind
    category: str
    decision: str
    received_at: datetime
    reasons: tuple[str, ...]
    size: int


@dataclass(frozen=True, slots=True)
class MessageFact:
    """One recorded message as reports see it: who, what, the decision and why."""

    id: int
    message_id: str
    from_addr: str
    subject: str
    kind: MessageKind
    category: str
    decision: str
    administration: str | None
    ticket: str | None
    """Reference of its ticket (None for ignored mail)."""
    received_at: datetime
    recorded_at: datetime
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MessageCount:
    """Messages recorded in a window with the same category, decision, Administration and kind."""

    category: str
    decision: str
    administration: str | None
    kind: MessageKind
    count: int


@dataclass(frozen=True, slots=True)
class TicketStory:
    """A ticket with every message, event and reply, oldest first."""

    ticket: TicketSummary
    messages: tuple[MessageSummary, ...]
    events: tuple[Event, ...]
    replies: tuple[OutboxSummary, ...]


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """A quarantined message; ``raw`` is None in listings (use ``get_quarantine``)."""

    id: int
    source_id: str
    dedupe_key: str | None
    size: int
    error: str
    state: QuarantineState
    at: datetime
    updated_at: datetime
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class StateEntry:
    key: str
    value: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DaemonRecord:
    """What one run of the daemon recorded about itself."""

    id: int
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    last_poll_at: datetime | None
    stopped_at: datetime | None


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts for ``[since, until)``; the ``*_now`` counts are current totals."""

    since: datetime
    until: datetime
    messages_by_kind: tuple[tuple[str, int], ...]
    tickets_by_category: tuple[tuple[str, int], ...]
    tickets_opened: int
    tickets_resolved: int
    tickets_taken_in: int
    replies_sent: int
    replies_held: int
    open_now: int
    waiting_take_in_now: int
    outbox_by_state_now: tuple[tuple[str, int], ...]
    quarantined_now: int
