"""Frozen records passed between the stages of the triage pipeline.

Every stage takes and returns these values and nothing mutable, so a stage can
be tested alone, replayed in a dry run, and stored as is by the daemon.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
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


def pickled_by_fields(cls: type[_Record]) -> type[_Record]:
    """Make ``cls`` (a dataclass) pickle as a call of ``cls`` with its field values in order.

    The triage result crosses from the worker process to the daemon for every message. A
    frozen slots dataclass pickles by default through dataclasses' own ``__getstate__`` and
    ``__setstate__``, which call ``fields()`` for every object, and sets each slot back one by
    one: calling the class costs about half as much to dump and a third less to load, for the
    very same objects. Only for classes that ``__init__`` rebuilds exactly: every field an
    ``__init__`` parameter, no ``__post_init__``.
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
    an address, comments, several From headers), ``from_ambiguous`` is set and
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


@dataclass(frozen=True, slots=True)
class AuthDecision:
    """Outcome of the authorization stage: a value, never an exception."""

    authorized: bool
    reasons: tuple[str, ...]


@pickled_by_fields
@dataclass(frozen=True, slots=True)
class TakeIn:
    """When the help desk takes a request in."""

    take_in_at: datetime
    in_hours: bool


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

    @property
    def privileged(self) -> bool:
        return self.category.privileged


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
