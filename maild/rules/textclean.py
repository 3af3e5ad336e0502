"""Separate what the sender wrote for this message from what they did not.

A request is judged on the sender's own words: quoted history, forwarded
messages, signatures and legal disclaimers are context, and a disclaimer that
mentions "password" or "eliminarlo" must not turn a phone-number change into a
password reset. The quoted part is kept aside (not thrown away) because the
sender may adopt it ("autorizzo", "please proceed with the request below"); the
classifier decides that, this module only cuts.

Why line based: every marker is a regular expression from the rules data,
matched on a *folded* copy of the text (lower case, accents and typographic
punctuation removed) so one pattern covers "Il giorno"/"IL GIORNO" and
"è"/"e'". What is kept, though, are the sender's original lines. Folding can
change a string's length, so the cleaner never maps offsets between the two:
it works on (number, original, folded) triples and cuts whole lines.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

_PUNCTUATION = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u200b": "", "\ufeff": "",
})


NO_SYMBOLS: Mapping[int, str] = MappingProxyType({})


def fold(text: str, symbols: Mapping[int, str] = NO_SYMBOLS) -> str:
    """Lower-case, strip accents and normalise typographic punctuation.

    "SBLOCCO", "più", "piu'" and "PIÙ" must all reach the same rule, so both the
    rules data and the message text go through this one function. ``symbols``
    (a ``str.translate`` table from the rules data) reads a symbol written for
    a word ("🔒") as that word; only non-ASCII text can hold one, and only as a
    character that is no letter or digit (``_Loader.symbols`` refuses others).
    """
    if text.isascii():  # the one ASCII character in the table is "`"
        return text.replace("`", "'").lower()
    # Searched, not translated: ``str.translate`` looks every character of non-ASCII text up in the table.
    text = _TYPOGRAPHIC.sub(_plain, text)
    if symbols and _SYMBOL.search(text) is not None:
        text = text.translate(symbols)
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    # Only non-ASCII characters can be combining marks: look at those alone.
    return _NON_ASCII.sub(_without_marks, decomposed).casefold()


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_TYPOGRAPHIC = re.compile("[" + "".join(re.escape(chr(code)) for code in _PUNCTUATION) + "]")
_SYMBOL = re.compile(r"[^\x00-\x7f\w]")
"""A character a symbol of the rules may be: not ASCII, nor a letter or digit (``\\w`` is ``str.isalnum`` or "_")."""


def _plain(typographic: re.Match[str]) -> str:
    return _PUNCTUATION[ord(typographic.group())]


def _without_marks(run: re.Match[str]) -> str:
    return "".join(ch for ch in run.group() if not unicodedata.combining(ch))


# The look-behind starts an address only at the start of a run: linear on a long line with no "@".
_LINK = re.compile(r"(?:https?://|www\.)\S+|(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")


@dataclass(frozen=True, slots=True)
class Marker:
    """A named regular expression from the rules data (the name goes in the reasons)."""

    name: str
    pattern: re.Pattern[str]
    examples: tuple[str, ...] = ()
    """Lines the pattern must find (the tests run it on them, folded)."""
    counter_examples: tuple[str, ...] = ()
    """Lines it must not find."""


@dataclass(frozen=True, slots=True)
class CleanRules:
    """The cleaning part of the rules data, already compiled.

    ``history`` patterns are searched on the folded body joined with newlines
    (MULTILINE), so a marker may span lines (an Outlook ``Da:/Inviato:/Oggetto:``
    block, an attribution wrapped over two lines). ``disclaimers`` are searched
    on one paragraph at a time, joined with spaces.

    The ``*_any`` patterns (see ``any_marker``) match wherever one of the
    markers does: one search rules a text out, and only a text that has a
    marker is searched marker by marker, for the first one in file order.
    None means "search each marker". Disclaimers have none: joined, their
    patterns lose the literal prefixes that make each one fast alone.
    """

    quote_line: re.Pattern[str]
    history: tuple[Marker, ...]
    header_line: re.Pattern[str]
    signatures: tuple[Marker, ...]
    closing: re.Pattern[str]
    closing_max_lines: int
    closing_max_chars: int
    separator: re.Pattern[str]
    disclaimers: tuple[Marker, ...]
    history_any: re.Pattern[str] | None = None
    signatures_any: re.Pattern[str] | None = None
    subject_line: re.Pattern[str] | None = None
    """A quoted header block's subject line; its group 1 is the subject as written."""
    postscript: re.Pattern[str] | None = None
    """A line that opens a P.S.: the sender's text again, kept after a signature or a closing block."""
    notices: tuple[Marker, ...] = ()
    """A standing notice in a signature block ("per le richieste di ... rivolgersi a ..."): part of the
    signature however long, never a request of the sender's."""
    requests: tuple[Marker, ...] = ()
    """A request to the help desk typed inside a signature block ("vi prego aggiornare la rubrica"): kept."""
    symbols: Mapping[int, str] = field(default_factory=lambda: NO_SYMBOLS)
    """Symbols written for words ("🔑" for "password"): the ``fold`` table every line is read through."""


def any_marker(markers: Sequence[Marker]) -> re.Pattern[str] | None:
    """One regex matching exactly where some marker matches, or None when they cannot be joined.

    Joining is safe for markers without groups (no back-reference can change
    meaning) that share their flags; anything else keeps the one-by-one search.
    """
    if not markers or any(m.pattern.groups for m in markers):
        return None
    flags = {m.pattern.flags for m in markers}
    if len(flags) != 1:
        return None
    try:
        return re.compile("|".join(f"(?:{m.pattern.pattern})" for m in markers), flags.pop())
    except re.error:  # e.g. a global inline flag, legal only at the start of a pattern
        return None


@dataclass(frozen=True, slots=True)
class Line:
    """One body line: 1-based number in the original body, text as written, folded text."""

    number: int
    text: str
    folded: str


@dataclass(frozen=True, slots=True)
class CleanedText:
    """The sender's own lines, the quoted/forwarded lines (cleaned the same way) and why."""

    own: tuple[Line, ...]
    quoted: tuple[Line, ...]
    notes: tuple[str, ...]
    quoted_subject: str = ""
    """The subject in the header block of the quoted/forwarded message: part of its request when adopted."""
    older: tuple[Line, ...] = ()
    """The thread's earlier messages below the quoted one, each cleaned the same way, nearest first: read when
    an adopted quote asks nothing itself ("see below, please action" over an agreement to an older request)."""


def split_lines(text: str, first_number: int = 1, symbols: Mapping[int, str] = NO_SYMBOLS) -> tuple[Line, ...]:
    """Number and fold every line once; all later steps reuse the folded copy."""
    raws = text.splitlines()
    # ASCII text folds as a whole into the same lines (lower case keeps every line break where it is).
    folded = fold(text).splitlines() if text.isascii() else [fold(raw, symbols) for raw in raws]
    return tuple(Line(first_number + i, raw, low) for i, (raw, low) in enumerate(zip(raws, folded, strict=True)))


def clean(body: str, rules: CleanRules) -> CleanedText:
    """Split ``body`` into the sender's own text and the quoted history."""
    notes: list[str] = []
    own, history = _cut_history(list(split_lines(body, symbols=rules.symbols)), rules, notes)
    own, inline_quotes = _take_quote_lines(own, rules, notes)
    own = _strip_trailers(own, rules, notes)
    quoted, older = _clean_quoted(history + inline_quotes, rules)
    return CleanedText(own=tuple(own), quoted=tuple(quoted), notes=tuple(notes),
                       quoted_subject=_quoted_subject(history, rules), older=tuple(older))


def _quoted_subject(history: Sequence[Line], rules: CleanRules) -> str:
    """The subject line of the header block that opens the history, or ""."""
    if rules.subject_line is None:
        return ""
    for ln in history[:_skip_history_header(history, rules)]:
        found = rules.subject_line.match(ln.text)
        if found is not None:
            return found.group(1).strip()
    return ""


def _cut_history(lines: list[Line], rules: CleanRules, notes: list[str]) -> tuple[list[Line], list[Line]]:
    """Remove every quoted-history block: own lines first, history lines second.

    A marker normally starts a trailing block (top posting: everything below is
    history). When the marker is an attribution immediately followed by
    ``>``-quoted lines, only the attribution goes here: the quoted lines are
    taken by ``_take_quote_lines`` and the sender's text *below* them (bottom
    posting) stays.
    """
    history: list[Line] = []
    while True:
        found = _first_history_marker(lines, rules)
        if found is None:
            return lines, history
        start, end, name = found
        following = next((ln for ln in lines[end + 1:] if ln.folded.strip()), None)
        if following is not None and rules.quote_line.match(following.folded):
            notes.append(f"quoted history removed from line {lines[start].number} ({name}, quoted lines)")
            history.extend(lines[start:end + 1])
            lines = lines[:start] + lines[end + 1:]
            continue
        notes.append(f"quoted history removed from line {lines[start].number} ({name})")
        history.extend(lines[start:])
        return lines[:start], history


def _first_history_marker(lines: Sequence[Line], rules: CleanRules) -> tuple[int, int, str] | None:
    """Earliest history marker as (first line index, last line index, marker name)."""
    if not lines:
        return None
    joined = "\n".join(ln.folded for ln in lines)
    if rules.history_any is not None and rules.history_any.search(joined) is None:
        return None
    best: tuple[int, int, str] | None = None
    for marker in rules.history:
        match = marker.pattern.search(joined)
        if match is None:
            continue
        start = joined.count("\n", 0, match.start())
        if best is None or start < best[0]:
            end = joined.count("\n", 0, max(match.start(), match.end() - 1))
            best = (start, end, marker.name)
    return best


def _take_quote_lines(lines: list[Line], rules: CleanRules, notes: list[str]) -> tuple[list[Line], list[Line]]:
    """Pull out ``>``-quoted lines wherever they are, stripping the quote marks."""
    own: list[Line] = []
    quoted: list[Line] = []
    for ln in lines:
        match = rules.quote_line.match(ln.folded)
        if match is None:
            own.append(ln)
            continue
        text = _unquote(ln.text)
        quoted.append(Line(ln.number, text, fold(text, rules.symbols)))
    if quoted:
        notes.append(f"{len(quoted)} quoted ('>') lines removed from line {quoted[0].number}")
    return own, quoted


def _unquote(text: str) -> str:
    stripped = text.lstrip()
    while stripped.startswith(">"):
        stripped = stripped[1:].lstrip(" ")
    return stripped


def _strip_trailers(lines: list[Line], rules: CleanRules, notes: list[str]) -> list[Line]:
    """Disclaimers, then signatures, then closing blocks, then trailing separators.

    Disclaimers go first because a long disclaimer after "Distinti saluti" would
    otherwise make the closing block look too long to be a signature.
    """
    lines = _remove_disclaimers(lines, rules, notes)
    lines = _cut_signature(lines, rules, notes)
    lines = _cut_closing(lines, rules, notes)
    while lines and (not lines[-1].folded.strip() or rules.separator.match(lines[-1].folded)):
        lines = lines[:-1]
    return lines


def _paragraphs(lines: Sequence[Line]) -> list[tuple[int, int]]:
    """Index ranges [start, end) of runs of non-blank lines."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for i, ln in enumerate(lines):
        blank = not ln.folded.strip()
        if blank and start is not None:
            spans.append((start, i))
            start = None
        elif not blank and start is None:
            start = i
    if start is not None:
        spans.append((start, len(lines)))
    return spans


def _remove_disclaimers(lines: list[Line], rules: CleanRules, notes: list[str]) -> list[Line]:
    """Drop each paragraph tail that starts with a legal disclaimer."""
    drop: set[int] = set()
    for start, end in _paragraphs(lines):
        block = lines[start:end]
        joined = " ".join(ln.folded for ln in block)
        for marker in rules.disclaimers:
            match = marker.pattern.search(joined)
            if match is None:
                continue
            first = start + _line_at(block, match.start())
            drop.update(range(first, end))
            notes.append(f"disclaimer removed from line {lines[first].number} ({marker.name})")
            break
    return [ln for i, ln in enumerate(lines) if i not in drop]


def _line_at(block: Sequence[Line], offset: int) -> int:
    """Index of the line holding ``offset`` of the lines joined with one separator each."""
    position = 0
    for index, ln in enumerate(block):
        position += len(ln.folded)
        if offset < position:
            return index
        position += 1
    return len(block) - 1


def _cut_signature(lines: list[Line], rules: CleanRules, notes: list[str]) -> list[Line]:
    """Cut at the first signature marker ("-- ", "Inviato da iPhone") to the end, or to a P.S. after it;
    a request typed inside the signature stays."""
    for i, ln in enumerate(lines):
        if rules.signatures_any is not None and rules.signatures_any.search(ln.folded) is None:
            continue
        for marker in rules.signatures:
            if marker.pattern.search(ln.folded):
                notes.append(f"signature removed from line {ln.number} ({marker.name})")
                end = _postscript(lines, i + 1, rules)
                return _then(lines[:i], _kept_requests(lines[i + 1:end], rules, notes)) + _kept_postscript(lines, end)
    return lines


def _kept_requests(block: Sequence[Line], rules: CleanRules, notes: list[str]) -> list[Line]:
    """The lines of a signature block that ask the help desk for something."""
    found = [(ln, name) for ln in block if (name := _request_in_signature(ln.folded, rules)) is not None]
    notes.extend(f"request kept from the signature, line {ln.number} ({name})" for ln, name in found)
    return [ln for ln, _name in found]


def _then(before: list[Line], paragraph: list[Line]) -> list[Line]:
    """``paragraph`` after ``before``, a blank line between them unless one is there already."""
    if not paragraph or not before or not before[-1].folded.strip():
        return before + paragraph
    return [*before, Line(paragraph[0].number, "", ""), *paragraph]


def _request_in_signature(folded: str, rules: CleanRules) -> str | None:
    """The name of the request marker that finds ``folded``, or None."""
    return next((m.name for m in rules.requests if m.pattern.search(folded)), None)


def _notice(folded: str, rules: CleanRules) -> bool:
    """A standing notice that asks the help desk for nothing."""
    return any(m.pattern.search(folded) for m in rules.notices) and _request_in_signature(folded, rules) is None


def _kept_postscript(lines: Sequence[Line], start: int) -> list[Line]:
    """The P.S. from ``start`` on, as a paragraph of its own (the signature before it is gone), or nothing."""
    if start >= len(lines):
        return []
    return [Line(lines[start].number, "", ""), *lines[start:]]


def _postscript(lines: Sequence[Line], start: int, rules: CleanRules) -> int:
    """The index of the first line from ``start`` that opens a P.S., or ``len(lines)``."""
    if rules.postscript is not None:
        for i in range(start, len(lines)):
            if rules.postscript.match(lines[i].folded):
                return i
    return len(lines)


def _cut_closing(lines: list[Line], rules: CleanRules, notes: list[str]) -> list[Line]:
    """Cut at a closing formula ("Cordiali saluti") that starts a signature-like tail.

    The tail must look like a signature: few, short lines, none of them a
    sentence. So "Thanks!" followed by "Please also delete the old list." is
    kept; a P.S. after the signature is the sender's text, kept however short.
    A standing notice is part of the signature whatever its length; a request
    typed in a signature line stays, as the sender's text.
    """
    for i, ln in enumerate(lines):
        if not rules.closing.match(ln.folded):
            continue
        end = _postscript(lines, i + 1, rules)
        block = lines[i + 1:end]
        asked = {t.number for t in block if _request_in_signature(t.folded, rules) is not None}
        rest = [t for t in block if t.folded.strip() and t.number not in asked]
        if asked and not rest:
            continue  # only the sender's requests follow the thanks: no signature to cut
        notices = [t.number for t in rest if _notice(t.folded, rules)]
        tail = [t.folded.strip() for t in rest if t.number not in notices]
        if len(tail) <= rules.closing_max_lines and all(_signature_like(t, rules) for t in tail):
            notes.append(f"signature removed from line {ln.number} (closing formula)")
            notes.extend(f"standing notice in the signature at line {n}: context, not a request" for n in notices)
            return _then(lines[:i], _kept_requests(block, rules, notes)) + _kept_postscript(lines, end)
    return lines


def _signature_like(text: str, rules: CleanRules) -> bool:
    """A name, title or phone line: short, and not a sentence (initials like "A.G." are fine).

    Links and addresses count as one short word: a signature line with the
    office's web page or self-service portal is still a signature line.
    """
    if len(_LINK.sub("link", text)) > rules.closing_max_chars or text[-1] in "?!:;":
        return False
    return not text.endswith(".") or len(text.split()) <= 3


_MAX_THREAD_DEPTH = 8
"""How many older messages of a thread are kept for adoption: a long thread's oldest ones ask nothing now."""


def _clean_quoted(lines: list[Line], rules: CleanRules, depth: int = 0) -> tuple[list[Line], list[Line]]:
    """Clean quoted history the way own text is cleaned, for when it is adopted: the nearest message and the
    older ones below it (cleaned alike, a blank line between them).

    The leading markers and header lines (Da:/Inviato:/Oggetto:) go; anything
    older nested inside is cut, as are its signature and disclaimer.
    """
    start = _skip_history_header(lines, rules)
    unquoted = [Line(ln.number, _unquote(ln.text), fold(_unquote(ln.text), rules.symbols))
                if rules.quote_line.match(ln.folded) else ln for ln in lines[start:]]
    nested: list[str] = []
    own, older = _cut_history(unquoted, rules, nested)
    own, _nested_quotes = _take_quote_lines(own, rules, nested)
    if not older or depth >= _MAX_THREAD_DEPTH:
        return _strip_trailers(own, rules, nested), []
    next_one, below = _clean_quoted(older, rules, depth + 1)
    return _strip_trailers(own, rules, nested), [*next_one, Line(0, "", ""), *below]


def _skip_history_header(lines: Sequence[Line], rules: CleanRules) -> int:
    """Index of the first line after the markers and header lines that open ``lines``."""
    index = 0
    while index < len(lines):
        text = lines[index].folded
        if not text.strip() or rules.header_line.match(text) or rules.separator.match(text):
            index += 1
            continue
        found = _first_history_marker(lines[index:], rules)
        if found is None or found[0] != 0:
            return index
        index += found[1] + 1
    return index
