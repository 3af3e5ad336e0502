"""Load and validate the screening data (config/screening.toml): what automatic mail looks like.

The screener is a small engine; the words, patterns and local parts it looks for
live in data, each with the reason ``maild triage`` shows, examples it must match
and look-alikes written by people that it must not. Everything is checked and
compiled here, once: a bad pattern, an unknown key or an example that does not
match fails with a ``RulesError`` naming the file and the key, and the
per-message path only runs precompiled regular expressions.

Schema (every table and key is checked; unknown keys are errors)::

    version = 1
    [engine]     max_body_chars       how much of the body is looked at
                 max_json_chars       the longest body read as a JSON notification
                 json_envelopes       keys whose string value is itself a notification (SNS "Message")
    [[address]]  id, kind, reason, patterns, examples, counter_examples,
                 optional alone (default true), envelope (false), generic (false)
    [[rule]]     id, kind, on, reason, patterns, examples, counter_examples,
                 optional alone (false), with ([]), unless ([]), generic (false)
    [[human]]    id, on, reason, patterns, examples, counter_examples, optional kinds (all)
    [[json]]     id, kind, reason, path, values, examples, counter_examples, optional generic (false)

``[[address]]``: mailboxes that are never a person. Its patterns match a whole local
part, lower case, unquoted, without ``+detail``; examples are whole addresses.
``alone``: a From with it is automatic mail by itself; ``envelope``: so is a Sender
or Return-Path with it (list managers send list mail in their own name).

``[[rule]]``: patterns searched, with ``^`` at every line, in each field of ``on``:
``subject``, ``body`` (its first ``max_body_chars``), ``attachment`` (the MIME type of
each attached part), ``link`` (the shown text of each link of a body read from HTML) or
``header:<name>`` (a field the parser keeps for it, one of
``maild.mail.parsing.headers.SCREENED_FIELDS``). A rule that is not ``alone`` counts only
when a sign it names in ``with`` (the id of an address, rule or json shape) is found
too, and no ``[[human]]`` mark is. A rule that is ``alone`` counts unless one of the
``[[human]]`` marks it names in ``unless`` is found (a person passing bulk mail on).

``[[human]]``: what a person writes and a machine does not, on ``subject`` or ``lead``
(the body before the first of the signs being weighed: a person's own words come before
the bounce they paste or forward). A mark cancels every sign that is not ``alone`` (of
the ``kinds`` it names, when it names some).

``[[json]]``: a body that is a notification service's JSON record; ``path`` is a dotted
key, ``values`` the values that make it this shape (empty: any value).

``generic``: the sign says "automatic" but not what kind; a message's kind is that of
its most specific sign (``maild.screener``).

Patterns are written in lower case and run on lower-cased text, each on its own, and a
leading ``\\b`` is checked on the match rather than by the regex: Python's engine then
jumps to a pattern's first letters at C speed instead of trying every position, which a
case-insensitive alternation does. And a pattern whose matches all start with one of a
few whole words (``\\b(your|the) message``) is not run on a text without them
(``FieldIndex``): on ordinary mail most patterns are never run at all.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maild.errors import RulesError
from maild.mail.parsing.headers import SCREENED_FIELDS
from maild.records import ScreenKind
from maild.settings import DEFAULT_SCREENING

FIELDS = frozenset({"subject", "body", "attachment", "link"})
HUMAN_FIELDS = frozenset({"subject", "lead"})
HEADER_FIELD = "header:"
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_ESCAPE = re.compile(r"\\.")
_WORDS = re.compile(r"\w+")
_COMMON = frozenset({"id", "reason", "patterns", "examples", "counter_examples"})


# --------------------------------------------------------------------------
# Compiled patterns


@dataclass(frozen=True, slots=True)
class Pattern:
    """One data pattern, compiled for speed (see the module docstring)."""

    regex: re.Pattern[str]
    word_start: bool
    """The source began with ``\\b``: checked on each match found, not by the regex."""
    needs: frozenset[str]
    """Whole words every match contains: a text without all of them is not searched."""
    any_of: frozenset[str]
    """Whole words of which every match contains one (empty: no such set is known)."""
    fragment: str
    """A text every match contains ("" when none is known)."""

    def may_match(self, text: str, words: AbstractSet[str]) -> bool:
        """False when ``text`` (lower case; its words ``words``) surely has no match."""
        return (self.needs <= words and (not self.any_of or not self.any_of.isdisjoint(words))
                and self.fragment in text)

    def find(self, text: str) -> re.Match[str] | None:
        """The first match in ``text`` (lower case), ``\\b`` honoured."""
        pos = 0
        while (match := self.regex.search(text, pos)) is not None:
            start = match.start()
            if not self.word_start or _word(text, start - 1) != _word(text, start):
                return match
            pos = start + 1
        return None

    @classmethod
    def compile(cls, source: str) -> Pattern:
        """``source`` without its leading ``\\b``, and what its matches must contain."""
        word_start = source.startswith("\\b")
        body = source.removeprefix("\\b")
        needs, any_of, fragment = _requirements(body, word_start=word_start)
        return cls(re.compile(body, re.MULTILINE), word_start, needs, any_of, fragment)


def first_match(patterns: Iterable[Pattern], text: str, words: AbstractSet[str]) -> re.Match[str] | None:
    """The earliest match of any of ``patterns`` in ``text`` (lower case; its words ``words``)."""
    best: re.Match[str] | None = None
    for pattern in patterns:
        match = pattern.find(text) if pattern.may_match(text, words) else None
        if match is not None and (best is None or match.start() < best.start()):
            best = match
    return best


def words_of(text: str) -> frozenset[str]:
    """The words of a lower-case text, as the patterns' ``needs`` are compared with them."""
    return frozenset(_WORDS.findall(text))


@dataclass(frozen=True, slots=True)
class FieldIndex:
    """The patterns of every rule that looks at one field, by what a text must hold for them to match.

    A pattern is filed under the longest word it needs (a long word is a rare one), or else
    under each word of its ``any_of``, so a text looks only at the patterns filed under its
    own words (and checks the rest of what they need).
    """

    by_word: Mapping[str, tuple[tuple[int, Pattern], ...]]
    """Word -> (rule position, pattern) of the patterns filed under it."""
    keys: frozenset[str]
    """The words of ``by_word``, as a set: intersected with a text's words in one C call."""
    others: tuple[tuple[int, Pattern], ...]
    """The patterns that need no word: tried on every text (their ``fragment`` first)."""

    def scan(self, text: str, words: frozenset[str]) -> dict[int, re.Match[str]]:
        """The earliest match of each rule (by position) in ``text`` (lower case; its words ``words``), in the rules'
        order, so the reasons read the same in every process whatever order the words' set gives."""
        found: dict[int, re.Match[str]] = {}
        tried: set[int] = set()
        candidates = [c for word in words & self.keys for c in self.by_word[word] if c[1].may_match(text, words)]
        candidates += [c for c in self.others if c[1].fragment in text]
        for position, pattern in candidates:
            if id(pattern) in tried:  # filed under two of the text's words
                continue
            tried.add(id(pattern))
            match = pattern.find(text)
            if match is not None and (position not in found or match.start() < found[position].start()):
                found[position] = match
        return dict(sorted(found.items()))

    @classmethod
    def build(cls, rules: Sequence[Rule], field: str) -> FieldIndex:
        """The index of the patterns of the rules that look at ``field``."""
        by_word: dict[str, list[tuple[int, Pattern]]] = {}
        others = []
        for position, rule in enumerate(rules):
            if field not in rule.on:
                continue
            for pattern in rule.patterns:
                keys = (max(sorted(pattern.needs), key=len),) if pattern.needs else sorted(pattern.any_of)
                for key in keys:
                    by_word.setdefault(key, []).append((position, pattern))
                if not keys:
                    others.append((position, pattern))
        return cls({w: tuple(items) for w, items in by_word.items()}, frozenset(by_word), tuple(others))


def _word(text: str, index: int) -> bool:
    """Whether ``text[index]`` is a word character as ``\\b`` sees it (out of range: no)."""
    if index < 0 or index >= len(text):
        return False
    char = text[index]
    return char.isalnum() or char == "_"


# What a pattern must contain, read from its source: the pieces of its top level, each a
# literal character ("char"), a zero-width boundary ("bound": \b, ^, $, \A, \Z), a character
# that is not a word character ("nonword": \s, \W), maybe some of those ("gap": \s*), a plain
# choice of literals ("alts"), a lookaround ("skip") or anything else ("other").
_Piece = tuple[str, str]
_OTHER: _Piece = ("other", "")
_NOT_PLAIN = frozenset("\\.^$*+?{}[]()")
_REPEAT = re.compile(r"\{(\d*)(?:,(\d*))?\}[?+]?")


def _requirements(source: str, *, word_start: bool) -> tuple[frozenset[str], frozenset[str], str]:
    """What every match of ``source`` contains: whole words, whole words one of which, a literal text.

    Only the top level is read; a group counts only when it is a plain choice of literals
    (``(your|the)``), and a word only when the pattern surely has a boundary on both its
    sides. So all three are necessary: a text without them cannot match.
    """
    pieces = _pieces(source)
    if pieces is None:
        return frozenset(), frozenset(), ""
    pieces = [("bound", "") if word_start else _OTHER, *pieces, _OTHER]
    segments = _segments(pieces)
    words = set()
    for text, left, right in segments:
        for match in _WORDS.finditer(text):
            if (match.start() > 0 or left) and (match.end() < len(text) or right):
                words.add(match.group(0))
    fragment = max((text for text, _, _ in segments), key=len, default="")
    choices = [c for c in (_choice(pieces, i) for i, p in enumerate(pieces) if p[0] == "alts") if c]
    any_of = max(choices, key=lambda c: min(map(len, c)), default=frozenset())
    return frozenset(words), any_of, fragment


def _choice(pieces: Sequence[_Piece], index: int) -> frozenset[str]:
    """The first whole word of each alternative of the group at ``index``, or nothing if one has none."""
    if not _bounded(pieces, index, -1):
        return frozenset()
    firsts = set()
    for alternative in pieces[index][1].split("|"):
        match = _WORDS.match(alternative)
        if match is None or not (match.end() < len(alternative) or _bounded(pieces, index, 1)):
            return frozenset()
        firsts.add(match.group(0))
    return frozenset(firsts)


def _bounded(pieces: Sequence[_Piece], index: int, step: int) -> bool:
    """Whether a word at ``pieces[index]`` surely ends on the side ``step`` (-1 before, 1 after).

    A "gap" (``\\s*``) is either empty, and the piece beyond it decides, or not, and ends the word.
    """
    index += step
    while 0 < index < len(pieces) - 1 and pieces[index][0] == "gap":
        index += step
    return _ends_word(pieces[index])


def _ends_word(piece: _Piece) -> bool:
    """Whether ``piece``, next to a word, surely ends it there."""
    kind, char = piece
    if kind in ("bound", "nonword"):
        return True
    return kind == "char" and not (char.isalnum() or char == "_")


def _segments(pieces: Sequence[_Piece]) -> list[tuple[str, bool, bool]]:
    """The runs of literal characters, each with whether a word surely ends before and after it."""
    segments = []
    run: list[str] = []
    left = False
    for index, (kind, char) in enumerate(pieces):
        if kind == "char":
            if not run:
                left = _bounded(pieces, index, -1)
            run.append(char)
        elif run:
            segments.append(("".join(run), left, _bounded(pieces, index - 1, 1)))
            run = []
    return segments


def _pieces(source: str) -> list[_Piece] | None:
    """The top-level pieces of ``source``, repetitions resolved; None when it is an alternation."""
    pieces: list[_Piece] = []
    index = 0
    while index < len(source):
        piece, index = _atom(source, index)
        if piece is None:
            return None
        quantifier = source[index:index + 1]
        least = 1
        if quantifier in ("?", "*", "+"):
            least, index = int(quantifier == "+"), index + 1 + (source[index + 1:index + 2] in ("?", "+"))
        elif quantifier == "{" and (repeat := _REPEAT.match(source, index)) is not None:
            least, index = int(repeat.group(1) or 0), repeat.end()
        if piece[0] != "skip":
            pieces.extend(_repeated(piece, least, once=not quantifier or quantifier not in "?*+{"))
    return pieces


def _repeated(piece: _Piece, least: int, *, once: bool) -> list[_Piece]:
    """What a repeated piece is known to be: ``\\s*`` is a "gap", ``\\s+`` one non-word character."""
    if once:
        return [piece]
    if piece[0] == "nonword":
        return [piece] if least else [("gap", "")]
    return [piece, _OTHER] if least else [_OTHER]


def _atom(source: str, index: int) -> tuple[_Piece | None, int]:
    """The piece at ``index`` and where the next one starts; None for a top-level ``|`` or ``)``."""
    char = source[index]
    if char in "|)":
        return None, index
    if char == "\\":
        return _escape(source, index)
    if char == "[":
        return _OTHER, _class_end(source, index) + 1
    if char == "(":
        close = _group_end(source[index:])
        if close is None:
            return None, index
        if source.startswith(("(?=", "(?!", "(?<=", "(?<!"), index):
            return ("skip", ""), index + close + 1
        inside = source[index + 1:index + close]
        plain = bool(inside) and not any(c in _NOT_PLAIN for c in inside)
        return (("alts", inside) if plain else _OTHER), index + close + 1
    if char in "^$":
        return ("bound", ""), index + 1
    if char == ".":
        return _OTHER, index + 1
    return ("char", char), index + 1


def _escape(source: str, index: int) -> tuple[_Piece, int]:
    """The piece an escape stands for: ``\\x27`` and ``\\.`` are literal characters, ``\\d`` anything."""
    escaped = source[index + 1:index + 2]
    if escaped in ("b", "A", "Z"):
        return ("bound", ""), index + 2
    if escaped in ("s", "W", "n", "t"):
        return ("nonword", ""), index + 2
    hexa = source[index + 2:index + 4]
    if escaped == "x" and len(hexa) == 2 and all(c in "0123456789abcdef" for c in hexa):
        return ("char", chr(int(hexa, 16))), index + 4
    if escaped and not escaped.isalnum():
        return ("char", escaped), index + 2
    return _OTHER, index + 2


def _class_end(source: str, index: int) -> int:
    """Index of the ``]`` closing the class opened at ``index``."""
    end = index + 1
    if source[end:end + 1] == "^":
        end += 1
    if source[end:end + 1] == "]":
        end += 1
    while end < len(source) and source[end] != "]":
        end += 2 if source[end] == "\\" else 1
    return end


def _group_end(source: str) -> int | None:
    """Index of the parenthesis closing the group ``source`` opens, or None."""
    depth, index, in_class = 0, 0, False
    while index < len(source):
        char = source[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


# --------------------------------------------------------------------------
# Records


@dataclass(frozen=True, slots=True)
class AddressRule:
    """A kind of mailbox that is never a person (``mailer-daemon``, ``*-bounces``...)."""

    id: str
    kind: ScreenKind
    reason: str
    pattern: re.Pattern[str]
    """Matched whole on ``local_part``: short texts, a handful of them, so one alternation."""
    alone: bool
    envelope: bool
    generic: bool


@dataclass(frozen=True, slots=True)
class Rule:
    """A sign of automatic mail in one or more fields of a message."""

    id: str
    kind: ScreenKind
    reason: str
    on: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    alone: bool
    partners: frozenset[str]
    """Ids of which one must be found too when not ``alone``; empty: only ever a partner."""
    generic: bool
    unless: frozenset[str] = frozenset()
    """For a rule that counts alone, the ids of the ``[[human]]`` marks that still cancel it."""


@dataclass(frozen=True, slots=True)
class HumanMark:
    """Words only a person writes: they cancel the signs that are not ``alone``."""

    id: str
    on: str
    reason: str
    patterns: tuple[Pattern, ...]
    kinds: frozenset[ScreenKind]
    """The kinds of sign it speaks against (empty: all): "my" is a person's word in a bounce, not in an auto-reply."""


@dataclass(frozen=True, slots=True)
class JsonShape:
    """A notification service's JSON record (bounce, complaint, delivery)."""

    id: str
    kind: ScreenKind
    reason: str
    path: tuple[str, ...]
    values: frozenset[str]
    generic: bool


@dataclass(frozen=True, slots=True)
class ScreeningRules:
    """The screening data, validated and compiled."""

    addresses: tuple[AddressRule, ...]
    rules: tuple[Rule, ...]
    human: tuple[HumanMark, ...]
    json: tuple[JsonShape, ...]
    max_body_chars: int
    max_json_chars: int
    json_envelopes: tuple[str, ...]
    fields: Mapping[str, FieldIndex]
    """Every field some rule looks at, with the index of its patterns (a plain dict: the record pickles,
    for a triage worker started by spawn)."""
    local_parts: re.Pattern[str]
    """Every address rule's patterns in one alternation, rule by rule (group ``a<position>``)."""

    @property
    def count(self) -> int:
        """How many rules the data holds, of every table."""
        return len(self.addresses) + len(self.rules) + len(self.human) + len(self.json)

    @classmethod
    def assemble(cls, addresses: Iterable[AddressRule], rules: Iterable[Rule], human: Iterable[HumanMark],
                 shapes: Iterable[JsonShape], *, max_body_chars: int, max_json_chars: int,
                 json_envelopes: Iterable[str]) -> ScreeningRules:
        """The record with its field indexes built."""
        rules = tuple(rules)
        names = sorted({on for rule in rules for on in rule.on}, key=lambda n: (n not in FIELDS, n))
        fields = {name: FieldIndex.build(rules, name) for name in names}
        addresses = tuple(addresses)
        local_parts = re.compile("|".join(f"(?P<a{i}>{a.pattern.pattern})" for i, a in enumerate(addresses))
                                 or "(?!)")
        return cls(addresses, rules, tuple(human), tuple(shapes), max_body_chars, max_json_chars,
                   tuple(json_envelopes), fields, local_parts)


# --------------------------------------------------------------------------
# Addresses and JSON bodies: pure, shared by the screener, the outbox and the loader's checks


def local_part(address: str) -> str:
    """The local part as compared: lower case, unquoted, without ``+detail`` (nor the ``<`` of a path)."""
    local = address.rpartition("@")[0] if "@" in address else address
    return local.strip(' \t<"').lower().partition("+")[0]


def machine_address_rule(address: str, rules: ScreeningRules) -> AddressRule | None:
    """The address rule ``address`` falls under, if it is a mailbox that is never a person."""
    local = local_part(address)
    match = rules.local_parts.fullmatch(local) if local else None
    if match is None or match.lastgroup is None:
        return None
    return rules.addresses[int(match.lastgroup[1:])]


def is_machine_address(address: str, rules: ScreeningRules) -> str | None:
    """Why nobody should ever write to ``address`` (its rule's reason and id), or None for a possible person.

    For the outbox as much as for screening: a reply to a mail system, a list manager or
    a PEC provider's transport mailbox is backscatter or the start of a loop.
    """
    rule = machine_address_rule(address, rules)
    return None if rule is None else f"{rule.reason} ({rule.id})"


def json_notification(body: str, shapes: Sequence[JsonShape], *, max_chars: int,
                      envelopes: Sequence[str] = ()) -> tuple[JsonShape, str] | None:
    """The JSON shape a body is, with the value that made it so, or None.

    Only a body that is, from its first character, a JSON object (or an array of them)
    short enough is read: a person pasting a record writes something before it. A record
    carried as a string in an ``envelopes`` key (SNS's "Message") is looked at first.
    """
    text = body.lstrip()
    if not shapes or text[:1] not in ("{", "[") or len(text) > max_chars:
        return None
    record = _json_record(text)
    for inner in (*(_json_record(record.get(key)) for key in envelopes), record):
        for shape in shapes:
            value = _at(inner, shape.path)
            if value is not None and (not shape.values or value in shape.values):
                return shape, value
    return None


def _json_record(value: object) -> dict[str, object]:
    """The first JSON object of ``value`` (text: the leading value, trailing text ignored), else {}."""
    if not isinstance(value, str) or value.lstrip()[:1] not in ("{", "["):
        return {}
    try:
        decoded, _ = json.JSONDecoder().raw_decode(value.lstrip())
    except (ValueError, RecursionError):
        return {}
    if isinstance(decoded, list):
        decoded = decoded[0] if decoded else {}
    return decoded if isinstance(decoded, dict) else {}


def _at(record: Mapping[str, object], path: tuple[str, ...]) -> str | None:
    """The string or number at a dotted path, or None."""
    value: object = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


# --------------------------------------------------------------------------
# Loading


def load_screening(path: Path = DEFAULT_SCREENING) -> ScreeningRules:
    """Read, validate and compile the screening data at ``path``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise RulesError(f"{path}: cannot read screening file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML: {exc}") from exc
    return parse_screening(data, str(path))


def parse_screening(data: Mapping[str, Any], source: str = "screening data") -> ScreeningRules:
    """Validate already-read screening data; ``source`` names it in errors."""
    return _Loader(source).rules(data)


class _Loader:
    """Validation helpers that know the file name, so every error can name it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.max_json_chars = 0

    def fail(self, key: str, reason: str) -> RulesError:
        return RulesError(f"{self.source}: {key}: {reason}")

    def rules(self, data: Mapping[str, Any]) -> ScreeningRules:
        self.known(data, "", {"version", "engine", "address", "rule", "human", "json"}, {"version"})
        if data.get("version") != 1:
            raise self.fail("version", "must be 1")
        engine = self.table(data, "engine")
        self.known(engine, "engine", {"max_body_chars", "max_json_chars", "json_envelopes"},
                   {"max_body_chars", "max_json_chars"})
        self.max_json_chars = self.positive(engine, "engine", "max_json_chars")
        addresses = [self.address(t, f"address[{i}]") for i, t in enumerate(self.array(data, "address"))]
        rules = [self.rule(t, f"rule[{i}]") for i, t in enumerate(self.array(data, "rule"))]
        human = [self.human(t, f"human[{i}]") for i, t in enumerate(self.array(data, "human"))]
        shapes = [self.shape(t, f"json[{i}]") for i, t in enumerate(self.array(data, "json"))]
        self.check_ids(addresses, rules, shapes, human)
        return ScreeningRules.assemble(
            addresses, rules, human, shapes, max_body_chars=self.positive(engine, "engine", "max_body_chars"),
            max_json_chars=self.max_json_chars,
            json_envelopes=self.strings(engine, "engine", "json_envelopes", required=False),
        )

    # -- the four tables

    def address(self, table: Mapping[str, Any], key: str) -> AddressRule:
        self.known(table, key, {*_COMMON, "kind", "alone", "envelope", "generic"}, {*_COMMON, "kind"})
        rule = AddressRule(
            id=self.ident(table, key), kind=self.kind(table, key), reason=self.string(table, key, "reason"),
            pattern=re.compile("|".join(f"(?:{s})" for s in self.sources(table, key))),
            alone=self.flag(table, key, "alone", default=True),
            envelope=self.flag(table, key, "envelope", default=False),
            generic=self.flag(table, key, "generic", default=False),
        )
        self.examples(table, key, lambda text: rule.pattern.fullmatch(local_part(text)) is not None)
        return rule

    def rule(self, table: Mapping[str, Any], key: str) -> Rule:
        self.known(table, key, {*_COMMON, "kind", "on", "alone", "with", "unless", "generic"},
                   {*_COMMON, "kind", "on"})
        rule = Rule(
            id=self.ident(table, key), kind=self.kind(table, key), reason=self.string(table, key, "reason"),
            on=self.fields(table, key), patterns=self.patterns(table, key),
            alone=self.flag(table, key, "alone", default=False),
            partners=frozenset(self.strings(table, key, "with", required=False)),
            generic=self.flag(table, key, "generic", default=False),
            unless=frozenset(self.strings(table, key, "unless", required=False)),
        )
        if rule.alone and rule.partners:
            raise self.fail(f"{key}.with", "a rule that counts alone needs no partner")
        if rule.unless and not rule.alone:
            raise self.fail(f"{key}.unless", "only a rule that counts alone names marks: every mark cancels the others")
        self.examples(table, key, lambda text: _matches(rule.patterns, text))
        return rule

    def human(self, table: Mapping[str, Any], key: str) -> HumanMark:
        self.known(table, key, {*_COMMON, "on", "kinds"}, {*_COMMON, "on"})
        on = self.string(table, key, "on")
        if on not in HUMAN_FIELDS:
            raise self.fail(f"{key}.on", f"must be one of {', '.join(sorted(HUMAN_FIELDS))}")
        names = self.strings(table, key, "kinds", required=False)
        kinds = frozenset(self.kind_of(name, f"{key}.kinds") for name in names)
        mark = HumanMark(self.ident(table, key), on, self.string(table, key, "reason"), self.patterns(table, key),
                         kinds)
        self.examples(table, key, lambda text: _matches(mark.patterns, text))
        return mark

    def shape(self, table: Mapping[str, Any], key: str) -> JsonShape:
        names = {"id", "kind", "reason", "path", "values", "examples", "counter_examples", "generic"}
        self.known(table, key, names, names - {"generic", "values"})
        path = tuple(self.string(table, key, "path").split("."))
        if not all(path):
            raise self.fail(f"{key}.path", "an empty key in the dotted path")
        shape = JsonShape(self.ident(table, key), self.kind(table, key), self.string(table, key, "reason"), path,
                          frozenset(self.strings(table, key, "values", required=False)),
                          self.flag(table, key, "generic", default=False))
        self.examples(table, key, lambda text: json_notification(text, (shape,), max_chars=self.max_json_chars)
                      is not None)
        return shape

    # -- checks across tables

    def check_ids(self, addresses: Sequence[AddressRule], rules: Sequence[Rule], shapes: Sequence[JsonShape],
                  human: Sequence[HumanMark]) -> None:
        ids = [a.id for a in addresses] + [r.id for r in rules] + [s.id for s in shapes]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise self.fail("id", f"used twice: {', '.join(twice)}")
        marks = {m.id for m in human}
        for index, rule in enumerate(rules):
            unknown = sorted(rule.partners - set(ids))
            if unknown:
                raise self.fail(f"rule[{index}].with", f"no address, rule or json shape is called {', '.join(unknown)}")
            if missing := sorted(rule.unless - marks):
                raise self.fail(f"rule[{index}].unless", f"no human mark is called {', '.join(missing)}")

    def examples(self, table: Mapping[str, Any], key: str, matches: Callable[[str], bool]) -> None:
        """Every example must match and every counter-example must not: the data checks itself."""
        for name, wanted in (("examples", True), ("counter_examples", False)):
            texts = self.strings(table, key, name, required=True)
            if not texts:
                raise self.fail(f"{key}.{name}", "give at least one")
            for text in texts:
                if matches(text) is not wanted:
                    verb = "does not match" if wanted else "matches"
                    raise self.fail(f"{key}.{name}", f"{self.ident(table, key)} {verb} {text[:80]!r}")

    # -- typed values

    def known(self, table: Mapping[str, Any], key: str, allowed: AbstractSet[str], required: AbstractSet[str]) -> None:
        where = f"{key}." if key else ""
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(f"{where}{unknown[0]}", "unknown key")
        missing = sorted(required - set(table))
        if missing:
            raise self.fail(f"{where}{missing[0]}", "missing")

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a table")
        return value

    def array(self, data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(t, Mapping) for t in value):
            raise self.fail(key, "must be an array of tables")
        return value

    def string(self, table: Mapping[str, Any], key: str, name: str) -> str:
        value = table.get(name)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key}.{name}", "must be a non-empty string")
        return value

    def strings(self, table: Mapping[str, Any], key: str, name: str, *, required: bool) -> list[str]:
        value = table.get(name, None if required else [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"{key}.{name}", "must be a list of non-empty strings")
        return value

    def flag(self, table: Mapping[str, Any], key: str, name: str, *, default: bool) -> bool:
        value = table.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key}.{name}", "must be true or false")
        return value

    def positive(self, table: Mapping[str, Any], key: str, name: str) -> int:
        value = table.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(f"{key}.{name}", "must be a positive integer")
        return value

    def ident(self, table: Mapping[str, Any], key: str) -> str:
        value = self.string(table, key, "id")
        if not _ID.match(value):
            raise self.fail(f"{key}.id", "lower-case letters, digits and _, starting with a letter")
        return value

    def kind(self, table: Mapping[str, Any], key: str) -> ScreenKind:
        return self.kind_of(self.string(table, key, "kind"), f"{key}.kind")

    def kind_of(self, value: str, key: str) -> ScreenKind:
        try:
            return ScreenKind(value)
        except ValueError:
            raise self.fail(key, f"must be one of {', '.join(k.value for k in ScreenKind)}") from None

    def fields(self, table: Mapping[str, Any], key: str) -> tuple[str, ...]:
        names = self.strings(table, key, "on", required=True)
        if not names:
            raise self.fail(f"{key}.on", "name at least one field")
        for name in names:
            header = name.removeprefix(HEADER_FIELD)
            if name not in FIELDS and not (name.startswith(HEADER_FIELD) and header in SCREENED_FIELDS):
                raise self.fail(f"{key}.on", f"{name!r}: one of {', '.join(sorted(FIELDS))} or header:<name> "
                                             f"with a name the parser keeps ({', '.join(SCREENED_FIELDS)})")
        return tuple(names)

    def sources(self, table: Mapping[str, Any], key: str) -> list[str]:
        sources = self.strings(table, key, "patterns", required=True)
        if not sources:
            raise self.fail(f"{key}.patterns", "give at least one")
        for index, source in enumerate(sources):
            if (letters := _ESCAPE.sub("", source)) != letters.lower():
                raise self.fail(f"{key}.patterns[{index}]", "write it in lower case: text is lower-cased to match")
            try:
                re.compile(source, re.MULTILINE)
            except re.error as exc:
                raise self.fail(f"{key}.patterns[{index}]", f"not a valid regular expression: {exc}") from exc
        return sources

    def patterns(self, table: Mapping[str, Any], key: str) -> tuple[Pattern, ...]:
        return tuple(Pattern.compile(source) for source in self.sources(table, key))


def _matches(patterns: Sequence[Pattern], text: str) -> bool:
    """Whether an example matches as a message's field would: lower-cased, through the gates."""
    lower = text.lower()
    return first_match(patterns, lower, words_of(lower)) is not None
