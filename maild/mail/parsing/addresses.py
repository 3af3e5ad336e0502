"""Originator and recipient addresses, with the ambiguities the authorizer must not trust."""

from __future__ import annotations

import re

from mailparser.utils import get_addresses

from maild.mail.parsing.defects import CONTROL, Defects, clean_header
from maild.mail.parsing.encoded_words import decode_words
from maild.mail.parsing.headers import Headers
from maild.records import Address

_OLD_FORM = re.compile(r"\s*([^\s()<>\[\]\",;:@\\]+@[A-Za-z0-9.-]+)\s*\([^()<>\"@\\\uff20\ufe6b]*\)\s*")
"""RFC 5322's obsolete ``address (Full Name)``: one bare address, then one plain comment holding no address."""


def read_address_list(headers: Headers, name: str, defects: Defects) -> tuple[Address, ...]:
    addresses: list[Address] = []
    for value in headers.all(name):
        found, reasons = _parse_addresses(value, defects)
        addresses.extend(found)
        for reason in reasons:
            defects.add(f"{name}-address-invalid", reason)
    return tuple(addresses)


def _parse_addresses(value: str, defects: Defects) -> tuple[list[Address], set[str]]:
    """mail-parser's structural reading, plus the reasons it could not be sure."""
    diagnostics: list[dict[str, object]] = []
    try:
        pairs: list[tuple[str, str]] = get_addresses(value, defects=diagnostics)
    except Exception as exc:  # a library fault on hostile input is a defect
        return [], {f"parser-fault {type(exc).__name__}"}
    reasons = {str(d.get("reason", "")) for d in diagnostics}
    found = [_address(name, addr, defects) for name, addr in pairs if addr]
    return found, reasons


def _address(name: str, addr: str, defects: Defects) -> Address:
    addr = clean_header(addr).strip()
    local, at, domain = addr.rpartition("@")
    display = " ".join(clean_header(decode_words(name, defects)).split())
    return Address(name=display, addr=f"{local}@{domain.lower()}" if at else addr)


def read_from(headers: Headers, defects: Defects) -> tuple[tuple[Address, ...], bool]:
    """Every From address, and whether two readings of the field could disagree."""
    values = headers.all("from")
    if not values:
        defects.add("from-missing")
        return (), False
    reasons: set[str] = {"multiple-from-fields"} if len(values) > 1 else set()
    addresses: list[Address] = []
    for value in values:
        found, parse_reasons = _parse_addresses(value, defects)
        addresses.extend(found)
        reasons |= parse_reasons | _lexical_ambiguity(value)
        if _is_old_form(value, found):
            reasons.discard("comment")
        if not found:
            reasons.add("no-address")
    if any(_names_another_address(a) for a in addresses):
        reasons.add("address-in-display-name")
    reasons.discard("")
    for reason in sorted(reasons):
        defects.add("from-ambiguous", reason)
    return tuple(addresses), bool(reasons)


def _names_another_address(address: Address) -> bool:
    """The display name holds an address other than the one the mail comes from; a name that is exactly the
    address itself ("x@y" <x@y>, as some clients write it) names nobody else."""
    if not any(at in address.name for at in ("@", "\uff20", "\ufe6b")):
        return False
    return address.name.strip().lower() != address.addr.lower()


def _is_old_form(value: str, found: list[Address]) -> bool:
    """The comment names the one bare address before it: no reader can take another sender from it."""
    match = _OLD_FORM.fullmatch(value)
    return (match is not None and len(found) == 1
            and found[0].addr.lower() == match.group(1).lower())


def _lexical_ambiguity(value: str) -> set[str]:
    """Comments, groups, unbalanced quotes or brackets, control characters.

    Readers disagree on all of these (which comment is the name, whether a group
    is one sender), so the authorizer must not rely on any single reading.
    """
    outer, reasons = _outside_quotes_and_comments(value)
    if ":" in outer or ";" in outer:
        reasons.add("group")
    depth = 0
    for ch in outer:
        depth += (ch == "<") - (ch == ">")
        if depth not in (0, 1):
            break
    if depth:
        reasons.add("unbalanced")
    if CONTROL.search(value.replace("\t", " ")):
        reasons.add("control-character")
    if "\ufffd" in value:
        reasons.add("invalid-utf8")
    return reasons


def _outside_quotes_and_comments(value: str) -> tuple[str, set[str]]:
    """The text outside quoted strings and (nested) comments, and what was seen."""
    reasons: set[str] = set()
    outer: list[str] = []
    quoted = escaped = False
    comment = 0
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or comment):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif ch == "(":
            comment += 1
            reasons.add("comment")
        elif comment:
            comment -= ch == ")"
        elif ch == ")":
            reasons.add("unbalanced")
        elif ch == '"':
            quoted = True
        else:
            outer.append(ch)
    if quoted or comment or escaped:
        reasons.add("unbalanced")
    return "".join(outer), reasons
