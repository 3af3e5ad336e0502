"""Screening: is this message a human request at all?

Anything automatic (auto-replies, bounces, receipts, bulk mail, our own mail
coming back) is ``ignored`` and never answered: answering automatic mail is
how help desks end up in reply loops. The rules follow RFC 3834 section 2 and
the corpus labelling spec, and every match is reported as a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from maild.mail.pec import PecFacts
from maild.records import ParsedMessage, ScreenResult

_AUTOMATIC_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "postmaster"})
_COMMENT = re.compile(r"\([^()]*\)")


def _bare(value: str) -> str:
    """Header value without comments and surrounding space, lower case."""
    previous = None
    while previous != value:  # nested comments: strip innermost first
        previous, value = value, _COMMENT.sub(" ", value)
    return value.strip().lower()


def screen(message: ParsedMessage, own_addresses: Iterable[str]) -> ScreenResult:
    """Return ``human=False`` with the reasons when the message is automatic.

    ``own_addresses`` are the help desk's own addresses (lower case): mail
    from them is our own mail coming back.
    """
    reasons = tuple(_automatic_signs(message, frozenset(a.lower() for a in own_addresses)))
    if reasons:
        return ScreenResult(human=False, reasons=reasons)
    return ScreenResult(human=True, reasons=("screen: no sign of automatic mail",))


def screen_pec_receipt(facts: PecFacts) -> ScreenResult:
    """A PEC receipt or notice is never a request, signed or not: ignoring a forged one harms nobody."""
    reason = (f"screen: PEC receipt (X-Ricevuta: {facts.receipt_type or 'unknown'}) from "
              f"{facts.envelope_from or 'the provider'}: recorded, never answered")
    return ScreenResult(human=False, reasons=(reason,))


def _automatic_signs(message: ParsedMessage, own: frozenset[str]) -> Iterable[str]:
    if message.auto_submitted is not None and _bare(message.auto_submitted) != "no":
        yield f"screen: Auto-Submitted: {message.auto_submitted.strip()[:80]}"
    if message.x_autoreply:
        yield "screen: X-Autoreply/X-Autorespond header present"
    if message.precedence is not None and _bare(message.precedence) in _AUTOMATIC_PRECEDENCE:
        yield f"screen: Precedence: {_bare(message.precedence)}"
    if message.content_type == "multipart/report":
        yield f"screen: multipart/report; report-type={message.report_type or 'unknown'}"
    if message.return_path is not None and message.return_path.strip(" <>") == "":
        yield "screen: empty Return-Path (null envelope sender)"
    for address in message.from_addresses:
        local = address.key.partition("@")[0]
        if local in _DAEMON_LOCAL_PARTS:
            yield f"screen: From {address.addr} is a mail system address"
        if address.key in own:
            yield f"screen: From {address.addr} is the help desk's own address"
    if not message.from_addresses:
        yield "screen: no From address to answer"
