"""Screening: is this message a human request at all?

Anything automatic (auto-replies, bounces, receipts, list and bulk mail, abuse
reports, our own mail coming back) is ``ignored`` and never answered: answering
automatic mail is how help desks end up in reply loops. Every sign found is
reported as a reason, and the ignored message gets the kind of its most specific
sign, so the digest and the stats can tell a bounce storm from a list.

Two sorts of sign. The headers RFC 3834 section 2 names (Auto-Submitted,
Precedence, multipart/report, a null Return-Path...) and the mailboxes that are
never a person are enough alone. What real gateways, filters and old auto-
responders put only in the subject and the body (config/screening.toml) is not:
people write "Messaggio non consegnato" too, and paste the error they got. Such a
sign counts only with another one it names (a bounce subject with an SMTP status,
an auto-reply subject with out-of-office words) and only when nothing shows a
person writing: a forwarding subject, a greeting or a question in the words
before the first sign. A few data signs count alone unless one of the marks they
name is found: bulk mail's unsubscribe button, which spam writes around like a
person, yields only to a person passing the mail on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from maild.mail.parsing.headers import SCREENED_FIELD_NAMES
from maild.mail.pec import PecFacts
from maild.records import ParsedMessage, ScreenKind, ScreenResult
from maild.rules.screening import (
    HEADER_FIELD,
    HumanMark,
    Rule,
    ScreeningRules,
    first_match,
    json_notification,
    machine_address_rule,
    words_of,
)

_PRECEDENCE = {"bulk": ScreenKind.LIST, "junk": ScreenKind.LIST, "list": ScreenKind.LIST,
               "auto_reply": ScreenKind.AUTO_REPLY}
_SPECIFIC_PRECEDENCE = frozenset({"list", "auto_reply"})
_REPORT_KINDS = {"delivery-status": ScreenKind.BOUNCE, "disposition-notification": ScreenKind.RECEIPT,
                 "feedback-report": ScreenKind.FEEDBACK_REPORT}
_KIND_ORDER = (ScreenKind.OWN_MAIL, ScreenKind.FEEDBACK_REPORT, ScreenKind.RECEIPT, ScreenKind.BOUNCE,
               ScreenKind.SPAM, ScreenKind.LIST, ScreenKind.AUTO_REPLY)
"""Most specific first: what a mail system says a message is (a bounce) before a filter's verdict on it,
and the verdict before List-Unsubscribe, which bulk spam carries too."""
_FIELD_NAMES = {name.lower(): name for name in SCREENED_FIELD_NAMES}
_COMMENT = re.compile(r"\([^()]*\)")
_QUOTED_SUBJECT = re.compile(r"^[ \t>]*(subject|oggetto|betreff|objet|asunto)[ \t]*:.*$", re.IGNORECASE | re.MULTILINE)
_SNIPPET_CHARS = 60
NO_HEADERS: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class Sign:
    """One reason to think a message automatic, and the kind of mail it points to."""

    reason: str
    kind: ScreenKind
    generic: bool = False
    """True when the sign says "automatic" but not what kind (a null Return-Path)."""


@dataclass(frozen=True, slots=True)
class _Hit:
    """A data rule found in a message, before the rules are weighed together."""

    id: str
    sign: Sign
    alone: bool
    partners: frozenset[str]
    start: int | None = None
    """Where in the body it was found, when it was found there."""
    unless: frozenset[str] = frozenset()
    """For a sign that counts alone, the ids of the marks of a person that still cancel it."""


def screen(message: ParsedMessage, own_addresses: Iterable[str], rules: ScreeningRules,
           headers: Mapping[str, str] = NO_HEADERS) -> ScreenResult:
    """Return ``human=False``, the reasons and the kind when the message is automatic.

    ``own_addresses`` are the help desk's own addresses (lower case): mail from them
    is our own mail coming back. ``headers``: header fields the parsed message does not
    carry (lower-case name to value), for the rules ``on = "header:<name>"``.
    """
    own = own_addresses if isinstance(own_addresses, frozenset) else frozenset(a.lower() for a in own_addresses)
    signs = list(_header_signs(message, own))
    found, notes = _data_signs(message, rules, headers, decided=any(not s.generic for s in signs))
    signs.extend(found)
    if signs:
        return ScreenResult(human=False, reasons=tuple(s.reason for s in signs), kind=_kind(signs))
    return ScreenResult(human=True, reasons=("screen: no sign of automatic mail", *notes))


def _kind(signs: Iterable[Sign]) -> ScreenKind:
    """The most specific kind among the signs: a bounce with a null Return-Path is a bounce."""
    signs = tuple(signs)
    kinds = [s.kind for s in signs if not s.generic] or [s.kind for s in signs]
    return min(kinds, key=_KIND_ORDER.index)


# --------------------------------------------------------------------------
# Header signs: each one enough alone (RFC 3834 section 2, RFC 3464, RFC 8098, RFC 5965)


def _bare(value: str) -> str:
    """Header value without comments and surrounding space, lower case."""
    previous = None
    while previous != value:  # nested comments: strip innermost first
        previous, value = value, _COMMENT.sub(" ", value)
    return value.strip().lower()


def _header_signs(message: ParsedMessage, own: frozenset[str]) -> Iterator[Sign]:
    """The signs in the fields the parser reads: standard, so each one decides alone."""
    if message.auto_submitted is not None and (submitted := _bare(message.auto_submitted)) != "no":
        yield Sign(f"screen: Auto-Submitted: {message.auto_submitted.strip()[:80]}", ScreenKind.AUTO_REPLY,
                   generic=submitted != "auto-replied")
    if message.x_autoreply:
        yield Sign("screen: X-Autoreply/X-Autorespond header present", ScreenKind.AUTO_REPLY)
    if message.precedence is not None and (precedence := _bare(message.precedence)) in _PRECEDENCE:
        yield Sign(f"screen: Precedence: {precedence}", _PRECEDENCE[precedence],
                   generic=precedence not in _SPECIFIC_PRECEDENCE)
    if message.content_type == "multipart/report":
        report = message.report_type or "unknown"
        yield Sign(f"screen: multipart/report; report-type={report}", _REPORT_KINDS.get(report, ScreenKind.BOUNCE),
                   generic=report not in _REPORT_KINDS)
    if message.return_path is not None and message.return_path.strip(" <>") == "":
        yield Sign("screen: empty Return-Path (null envelope sender)", ScreenKind.BOUNCE, generic=True)
    for address in message.from_addresses:
        if address.key in own:
            yield Sign(f"screen: From {address.addr} is the help desk's own address", ScreenKind.OWN_MAIL)
    if not message.from_addresses and not message.subject and message.date is None:
        # A person's mail without a From still gets its ticket (unanswered); without From, Subject and Date
        # it is no message a mail client wrote, but a dump or a log.
        yield Sign("screen: no From, Subject or Date: not a message a person sent", ScreenKind.AUTO_REPLY,
                   generic=True)


# --------------------------------------------------------------------------
# Data signs (config/screening.toml), weighed together


def _data_signs(message: ParsedMessage, rules: ScreeningRules, headers: Mapping[str, str],
                *, decided: bool) -> tuple[list[Sign], list[str]]:
    """The signs that count, and for a message they do not make automatic, why not.

    ``decided``: a sign of a definite kind is already found. The body, where most of the
    work is (a bounce's is long), is then not read: nothing found there could change the
    decision, and a bounce storm costs little more than ordinary mail.
    """
    hits: dict[str, _Hit] = {}
    for hit in _address_hits(message, rules):
        hits.setdefault(hit.id, hit)
    decided = decided or any(h.alone and not h.sign.generic for h in hits.values())
    body = _Text.of("" if decided else message.body_text[:rules.max_body_chars])
    _rule_hits(hits, message, body, rules, headers)
    if not hits:
        return [], []
    signs = [h.sign for h in hits.values() if h.alone and not h.unless]
    notes = []
    for hit in (h for h in hits.values() if h.alone and h.unless):
        mark = _human_mark(message.subject, body, [hit], hits, (m for m in rules.human if m.id in hit.unless))
        if mark is None:
            signs.append(hit.sign)
        else:
            notes.append(_cancelled(mark, [hit]))
    weak = [h for h in hits.values() if not h.alone and h.partners & hits.keys()]
    if weak:
        mark = _human_mark(message.subject, body, weak, hits, rules.human)
        if mark is None:
            signs.extend(h.sign for h in weak)
            signs.extend(_partners(weak, hits))
        else:
            notes.append(_cancelled(mark, weak))
    if signs:
        return signs, []
    return [], notes or [f"screen: not enough alone: {h.sign.reason.removeprefix('screen: ')}" for h in hits.values()]


def _cancelled(mark: str, hits: Iterable[_Hit]) -> str:
    """Why signs found do not count: a person wrote the message."""
    return (f"screen: written by a person ({mark}), so these do not count: "
            + "; ".join(h.sign.reason.removeprefix("screen: ") for h in hits))


@dataclass(frozen=True, slots=True)
class _Text:
    """One text the rules look at: lower-cased once (the patterns are lower case), with its words."""

    lower: str
    shown: str
    """As written, for the reasons, when lower-casing kept its length (it nearly always does)."""
    words: frozenset[str]

    @classmethod
    def of(cls, text: str) -> _Text:
        lower = text.lower()
        return cls(lower, text if len(text) == len(lower) else lower, words_of(lower))


def _rule_hits(hits: dict[str, _Hit], message: ParsedMessage, body: _Text, rules: ScreeningRules,
               headers: Mapping[str, str]) -> None:
    """Add every rule and json shape found to ``hits``, by id."""
    for on, texts in _fields(message, body, headers):
        index = rules.fields.get(on)
        if index is None:
            continue
        for text in texts:
            for position, match in index.scan(text.lower, text.words).items():
                hits.setdefault(rules.rules[position].id, _rule_hit(rules.rules[position], on, text, match))
    notification = json_notification(message.body_text, rules.json, max_chars=rules.max_json_chars,
                                     envelopes=rules.json_envelopes)
    if notification is not None:
        shape, value = notification
        sign = Sign(f"screen: {shape.reason}: {'.'.join(shape.path)} = “{_snippet(value)}”", shape.kind,
                    shape.generic)
        hits[shape.id] = _Hit(shape.id, sign, True, frozenset())


def _rule_hit(rule: Rule, on: str, text: _Text, match: re.Match[str]) -> _Hit:
    """The hit with its reason quoting the words found, as written, so an operator sees them."""
    shown = text.shown[match.start():match.end()] or text.shown
    found = f"{on} has “{_snippet(shown)}”"
    if on.startswith(HEADER_FIELD):  # the field as it reads: "X-Spam-Flag: YES"
        name = on.removeprefix(HEADER_FIELD)
        value = text.shown if match.end() < _SNIPPET_CHARS else f"… {shown}"
        found = f"{_FIELD_NAMES.get(name, name)}: {_snippet(value)}"
    sign = Sign(f"screen: {rule.reason}: {found}", rule.kind, rule.generic)
    return _Hit(rule.id, sign, rule.alone, rule.partners, match.start() if on == "body" else None, rule.unless)


def _fields(message: ParsedMessage, body: _Text,
            headers: Mapping[str, str]) -> Iterator[tuple[str, Iterable[_Text]]]:
    """Each field the message has, with its texts: the rules of fields it lacks are not even looked at."""
    yield "subject", (_Text.of(message.subject),)
    yield "body", (body,)
    if message.attachments:
        yield "attachment", (_Text.of(a.content_type) for a in message.attachments)
    if message.link_texts:
        yield "link", (_Text.of(text) for text in message.link_texts)
    for name, value in headers.items():
        yield HEADER_FIELD + name, (_Text.of(value),)


def _partners(weak: Iterable[_Hit], hits: Mapping[str, _Hit]) -> Iterator[Sign]:
    """The partner signs that made the weak ones count, generic: they only confirm."""
    counted = {h.id for h in weak}
    for ident in sorted({p for h in weak for p in h.partners} & hits.keys() - counted):
        hit = hits[ident]
        if not hit.alone:
            yield Sign(hit.sign.reason, hit.sign.kind, generic=True)


def _address_hits(message: ParsedMessage, rules: ScreeningRules) -> Iterator[_Hit]:
    """From mailboxes that are never a person; Sender and Return-Path only for the ``envelope`` ones."""
    for address in message.from_addresses:
        rule = machine_address_rule(address.addr, rules)
        if rule is not None:
            sign = Sign(f"screen: From {address.addr}: {rule.reason}", rule.kind, rule.generic)
            yield _Hit(rule.id, sign, rule.alone, frozenset())
    envelope = [a.addr for a in message.sender]
    if message.return_path and message.return_path.lower() not in {a.key for a in message.from_addresses}:
        envelope.append(message.return_path)
    for addr in envelope:
        rule = machine_address_rule(addr, rules)
        if rule is not None and rule.envelope:
            yield _Hit(rule.id, Sign(f"screen: sent by {addr}: {rule.reason}", rule.kind, rule.generic),
                       True, frozenset())


def _human_mark(subject: str, body: _Text, weak: Sequence[_Hit], hits: Mapping[str, _Hit],
                marks: Iterable[HumanMark]) -> str | None:
    """The first sign of a person writing that speaks against the ``weak`` signs, as a reason, or None.

    Body marks are looked for in the words before the first of these signs or their
    partners (the lead): a person's own words come before the error they paste; what
    comes after is the machine's text, or the person's quoting it. A ``Subject:`` line
    there is the original's words (receipts and bounces quote it), not the writer's.
    """
    involved = [*weak, *(hits[p] for h in weak for p in h.partners if p in hits)]
    lead_end = min((h.start for h in involved if h.start is not None), default=len(body.lower))
    lead = _Text.of(_QUOTED_SUBJECT.sub("", body.shown[:lead_end]))
    title = _Text.of(subject)
    kinds = {h.sign.kind for h in weak}
    for mark in marks:
        if mark.kinds and not mark.kinds & kinds:
            continue
        text = title if mark.on == "subject" else lead
        match = first_match(mark.patterns, text.lower, text.words)
        if match is not None:
            return f"{mark.reason}: “{_snippet(text.shown[match.start():match.end()])}”"
    return None


def _snippet(text: str) -> str:
    """A matched text as a reason shows it: one line, short."""
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS - 1] + "…"


def screen_pec_receipt(facts: PecFacts) -> ScreenResult:
    """A PEC receipt or notice is never a request, signed or not: ignoring a forged one harms nobody."""
    reason = (f"screen: PEC receipt (X-Ricevuta: {facts.receipt_type or 'unknown'}) from "
              f"{facts.envelope_from or 'the provider'}: recorded, never answered")
    return ScreenResult(human=False, reasons=(reason,), kind=ScreenKind.RECEIPT)
