"""The PEC stage: receipts set aside, envelopes unwrapped into the request they carry.

A PEC envelope is the provider's wrapper around the sender's message: the request
is ``postacert.eml``, never the envelope's boilerplate, and nobody may be
answered at ``posta-certificata@<provider>``. What the envelope says about its
sender is only a claim until the provider's signature is found valid, which is
the authorizer's business (``maild.authorizer.authorize_pec``), and it is
checked only when a trust decision needs it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from maild.mail.parsing import parse_message
from maild.mail.pec import PecFacts, PecKind, postacert, read_pec
from maild.mail.smime import SignatureCheck, SignatureStatus
from maild.records import Address, ParsedMessage, PecSummary
from maild.settings import Limits

_DELIVERED = {
    "accettazione": "accepted by the provider",
    "presa-in-carico": "taken in charge by the recipient's provider",
    "avvenuta-consegna": "delivered",
}
_NOT_DELIVERED = {
    "non-accettazione": "not accepted by the provider",
    "errore-consegna": "not delivered",
    "preavviso-errore-consegna": "not delivered within 12 hours",
    "rilevazione-virus": "not delivered: a virus was found",
}


@dataclass(frozen=True, slots=True)
class PecRead:
    """A PEC message as the later stages see it: the facts, the raw bytes to verify, the request."""

    facts: PecFacts
    raw: bytes
    message: ParsedMessage
    """postacert.eml with the envelope's arrival time for envelopes and anomalies; the message itself for receipts."""


def read(raw: bytes, outer: ParsedMessage, limits: Limits) -> PecRead | None:
    """The PEC reading of ``raw`` (already parsed as ``outer``), or None for ordinary mail."""
    facts = read_pec(raw, limits)
    if facts is None:
        return None
    if facts.kind is PecKind.RECEIPT:
        return PecRead(facts, raw, outer)
    return PecRead(facts, raw, unwrap(raw, outer, facts, limits))


def unwrap(raw: bytes, outer: ParsedMessage, facts: PecFacts, limits: Limits) -> ParsedMessage:
    """postacert.eml as the request: its text, subject, attachments and threading; never the provider's address.

    The outer Authentication-Results are dropped: they authenticate the
    provider's envelope, never the sender inside it.
    """
    inner_raw = postacert(raw, limits)
    if not inner_raw:  # nothing inside to answer: the envelope's From is the provider's
        return dataclasses.replace(outer, from_addresses=(), reply_to=(), auth_results=(),
                                   subject=facts.original_subject, defects=(*outer.defects, "pec: no postacert.eml"))
    inner = parse_message(inner_raw, limits)
    reply_to = (Address("", facts.reply_to),) if facts.reply_to else inner.reply_to
    return dataclasses.replace(
        inner,
        message_id=facts.refers_to or inner.message_id,
        reply_to=reply_to,
        subject=inner.subject or facts.original_subject,
        date=inner.date or outer.date,
        received_at=outer.received_at or outer.date,
        auth_results=(),
        defects=(*inner.defects, *(f"pec: {d}" for d in facts.defects)),
        size=outer.size,
    )


def certified(message: ParsedMessage, facts: PecFacts) -> ParsedMessage:
    """The request from its certified sender, greeted by the inner From's display name."""
    assert facts.certified_sender_candidate is not None
    name = facts.inner_from.name if facts.inner_from else ""
    return dataclasses.replace(message, from_addresses=(Address(name, facts.certified_sender_candidate),),
                               from_ambiguous=False)


def describe(facts: PecFacts) -> str:
    """One reason line with what the message says it is, for triage and ``ticket show``."""
    what = f"PEC receipt {facts.receipt_type or 'of unknown type'}" if facts.kind is PecKind.RECEIPT else (
        "PEC envelope" if facts.kind is PecKind.ENVELOPE else "PEC anomaly envelope (uncertified mail inside)")
    parts = [f"pec: {what} from {facts.envelope_from or 'no single envelope From'}"]
    if facts.kind is PecKind.ENVELOPE:
        parts.append(f"sender claimed {facts.certified_sender_candidate}" if facts.certified_sender_candidate
                     else "no agreeing sender (daticert mittente, Per conto di, inner From)")
    if facts.refers_to:
        parts.append(f"refers to {facts.refers_to}")
    return ", ".join(parts)


def delivery(facts: PecFacts) -> tuple[str | None, bool]:
    """What a receipt says happened to the message it refers to, and whether that was delivery."""
    kind = facts.receipt_type or ""
    if kind in _DELIVERED:
        return _DELIVERED[kind], True
    if kind in _NOT_DELIVERED:
        detail = facts.daticert.errore_esteso or facts.daticert.errore if facts.daticert else ""
        return f"{_NOT_DELIVERED[kind]}: {detail or 'no reason given'}", False
    return None, True


def summary(facts: PecFacts, check: SignatureCheck | None) -> PecSummary:
    """The PEC record of a Disposition; ``check`` is None when no trust decision was needed."""
    status = check.status if check is not None else SignatureStatus.NOT_CHECKED
    outcome, delivered = delivery(facts) if facts.kind is PecKind.RECEIPT else (None, True)
    certified_sender = facts.certified_sender_candidate if status is SignatureStatus.VALID else None
    return PecSummary(
        kind=facts.kind.value, receipt_type=facts.receipt_type, signature=status.value,
        certified_sender=certified_sender if facts.kind is PecKind.ENVELOPE else None,
        provider=facts.provider, refers_to=facts.refers_to, reply_to=facts.reply_to,
        delivery=outcome, delivered=delivered,
    )
