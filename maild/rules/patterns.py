"""The rule language's pattern compiler: templates to regexes, and the index that picks which to try."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from maild.errors import RulesError
from maild.rules.textclean import fold

WORD = "[a-z0-9]"
TERM_WORD = re.compile(r"^[a-z0-9]+\*?$")
PIECE = re.compile(
    r"^\{(?:~(?P<wide>~?)(?P<gap>\d+)(?:!(?P<but>[a-z_][a-z0-9_]*))?|(?P<cls>[a-z_][a-z0-9_]*)(?P<cq>[?*]?)"
    r"|!(?P<unless>[a-z_][a-z0-9_]*))\}$"
    r"|^(?P<lit>[a-z0-9]+\*?)(?P<lq>\??)$"
)
MAX_GAP = 12


@dataclass(frozen=True, slots=True)
class Template:
    """A template's regex and the words it cannot match without.

    ``needs`` has one set per required piece: the first words of the piece's
    terms, a stem written ``stem*``. When some set shares nothing with the
    words of a text (``Lexicon.positions``), the regex cannot match there and is
    not run at all: most templates are skipped for most messages, and running
    them would be most of the classifier's time.
    """

    source: str
    """The regex, compiled on first use or by ``Rules.compile`` (see there)."""
    needs: tuple[frozenset[str], ...]
    first: frozenset[str]
    """The leads of the first piece: every match starts where a word of the text fits one of them."""
    where: str
    """``rules file: key`` of the template, for the error if its regex does not compile."""
    _compiled: list[re.Pattern[str]] = field(default_factory=list, init=False, compare=False, repr=False)

    @property
    def compiled(self) -> bool:
        return bool(self._compiled)

    @property
    def pattern(self) -> re.Pattern[str]:
        if not self._compiled:
            try:
                self._compiled.append(re.compile(self.source))
            except re.error as exc:
                raise RulesError(f"{self.where}: invalid regular expression: {exc}") from exc
        return self._compiled[0]

    def matches(self, text: str, words: frozenset[str], at: Mapping[str, Sequence[int]]) -> list[re.Match[str]]:
        """What ``pattern.finditer(text)`` finds, tried only where a word of ``first`` starts.

        ``at`` maps the ``words`` of ``text`` (see ``Lexicon.positions``) to the
        offsets where they start. A match starts at the start of a word that fits
        the first piece (the pattern opens with a word boundary and that piece is
        required), so every other offset would fail: trying a few offsets
        instead of scanning the whole text is most of the matching saved. Overlaps
        are skipped as ``finditer`` skips them (a match is never empty).
        """
        leads = self.first & words
        if not leads:
            return []
        # Each word's offsets are in order already: only several words need merging.
        starts = at[next(iter(leads))] if len(leads) == 1 else sorted(o for word in leads for o in at[word])
        pattern = self.pattern
        found: list[re.Match[str]] = []
        end = 0
        for start in starts:
            if start >= end and (match := pattern.match(text, start)) is not None:
                found.append(match)
                end = match.end()
        return found

    def first_match_within(self, text: str, words: frozenset[str], at: Mapping[str, Sequence[int]], after: int,
                           before: int) -> re.Match[str] | None:
        """The first match that starts after offset ``after`` and before ``before`` (see ``matches``)."""
        starts = sorted(offset for word in self.first & words for offset in at[word] if after < offset < before)
        for start in starts:
            match = self.pattern.match(text, start)
            if match is not None:
                return match
        return None


@dataclass(frozen=True, slots=True)
class TemplateIndex:
    """Finds the templates that may match a text without trying each one.

    Templates share needs (one vocabulary class opens many of them), so each
    distinct need is numbered once, as one bit of an integer, and a text's
    words name the needs they meet in one pass; a template may match when all
    of its own are met. Each template is filed under its smallest need, so
    only those filed under a met need are looked at. Every template needs a
    word: its first piece is required.
    """

    templates: tuple[Template, ...]
    needs_of: Mapping[str, int]
    """The needs each word meets (bit ``n`` for need ``n``)."""
    filed_of: Mapping[str, int]
    """The templates (bit ``p`` for position ``p``) filed under a need each word meets."""
    keys: frozenset[str]
    """The words of ``needs_of``."""
    wants: tuple[int, ...]
    """The needs of each template, as bits."""

    @classmethod
    def of(cls, templates: Sequence[Template]) -> TemplateIndex:
        numbers: dict[frozenset[str], int] = {}
        wants: list[int] = []
        filed: dict[int, int] = {}
        for position, template in enumerate(templates):
            wants.append(sum({1 << numbers.setdefault(need, len(numbers)) for need in template.needs}))
            smallest = numbers[min(template.needs, key=len)]
            filed[smallest] = filed.get(smallest, 0) | 1 << position
        needs_of: dict[str, int] = {}
        filed_of: dict[str, int] = {}
        for need, number in numbers.items():
            for word in need:
                needs_of[word] = needs_of.get(word, 0) | 1 << number
                filed_of[word] = filed_of.get(word, 0) | filed.get(number, 0)
        return cls(tuple(templates), needs_of, filed_of, frozenset(needs_of), tuple(wants))

    def candidates(self, words: frozenset[str]) -> list[int]:
        """Positions, in file order, of the templates that may match a text holding ``words``."""
        met = found = 0
        for word in words & self.keys:
            met |= self.needs_of[word]
            found |= self.filed_of[word]
        out = []
        wants = self.wants
        unmet = ~met
        bits = bin(found)[:1:-1]  # bit p at index p: "find" walks the set bits in C
        position = bits.find("1")
        while position >= 0:
            if not wants[position] & unmet:
                out.append(position)
            position = bits.find("1", position + 1)
        return out


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Turns a canonical text into the words ``Template.needs`` are written in.

    ``stems`` matches, at the start of a word, the longest stem of any
    ``stem*`` term (one trie-shaped regex, one pass); ``implied`` maps it to
    itself and every shorter stem that is also a prefix of it.
    """

    stems: re.Pattern[str] | None
    implied: Mapping[str, frozenset[str]]
    spaced: re.Pattern[str] | None
    """``stems`` after a space: opening with a literal, it lets the regex engine skip from word to word."""

    def positions(self, text: str, tokens: Iterable[str], starts: Iterable[int]) -> dict[str, list[int]]:
        """The words of ``text`` (its ``tokens`` joined by single spaces, each starting at its offset in
        ``starts``) and ``stem*`` for every stem one of them starts with, each with the offsets where it
        starts, in order.

        Worked out once per text: every template tried on it reads its start
        offsets here (``Template.matches``) instead of scanning the text.
        """
        at: dict[str, list[int]] = {}
        for token, start in zip(tokens, starts, strict=True):
            found = at.get(token)
            if found is None:
                at[token] = [start]
            else:
                found.append(start)
        if self.stems is not None and self.spaced is not None:
            # A canonical text's words start at its start and after each space (its tokens are joined by one).
            first = self.stems.match(text)
            if first is not None:
                self._file(at, first.group(), 0)
            for match in self.spaced.finditer(text):
                self._file(at, match.group()[1:], match.start() + 1)
        return at

    def _file(self, at: dict[str, list[int]], stem: str, start: int) -> None:
        """File ``start`` under ``stem*`` and every shorter stem it implies."""
        for implied in self.implied[stem]:
            at.setdefault(implied, []).append(start)

    def longest_stem(self, word: str) -> int:
        """The length of the longest ``stem*`` term ``word`` starts with, 0 if none."""
        match = None if self.stems is None else self.stems.match(word)
        return 0 if match is None else len(match.group())


def lead(term: str) -> str:
    """The first word of a (valid) term as the template needs write it: ``word`` or ``stem*``.

    Every word of a term is a whole word of the canonical text, or the start
    of one when it ends in ``*`` (see ``_Loader.term``).
    """
    return fold(term).replace("'", " ").replace("-", " ").split()[0]


def lexicon(leads: Iterable[str]) -> Lexicon:
    stems = {lead[:-1] for lead in leads if lead.endswith("*")}
    if not stems:
        return Lexicon(None, {}, None)
    implied = {stem: frozenset(s + "*" for s in stems if stem.startswith(s)) for stem in stems}
    trie = _trie(sorted(stems))
    return Lexicon(re.compile(f"(?<!{WORD})" + trie), implied, re.compile(" " + trie))


def gap_regex(word: str, size: int) -> str:
    """One to ``size`` words, each matched by ``word``, separated by single spaces."""
    return f"{word}(?: {word}){{0,{size - 1}}}"


def guard(leads: Iterable[str]) -> str:
    """A regex matching at the start of a word that one of ``leads`` fits (``word`` whole, or ``stem*``).

    Trie-shaped, so its cost does not grow with the number of leads.
    """
    return _guard_trie([(lead.rstrip("*"), lead.endswith("*")) for lead in sorted(leads)])


def _guard_trie(entries: Sequence[tuple[str, bool]]) -> str:
    if any(stem and not rest for rest, stem in entries):
        return ""  # a stem ends here: any continuation fits
    children: dict[str, list[tuple[str, bool]]] = {}
    for rest, stem in entries:
        if rest:
            children.setdefault(rest[0], []).append((rest[1:], stem))
    branches = [char + _guard_trie(below) for char, below in sorted(children.items())]
    if any(not rest for rest, _stem in entries):
        branches.append(f"(?!{WORD})")  # a whole word ends here
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789 ")
"""The characters a term's regex spells out as themselves (see ``_Loader.term``)."""


def factored(regexes: Sequence[str]) -> str:
    """``(?:r1|r2|...)`` over term regexes, with the letters they open with shared as a trie.

    Only terms whose next character is the text's can match, so trying them
    after that character alone tries the same terms in the same order as the
    flat alternation: the same match, found without stepping over every other
    term of a large class.
    """
    return f"(?:{_factored(regexes)})"


def _factored(rests: Sequence[str]) -> str:
    if len(rests) == 1:
        return rests[0]
    if not all(rest and rest[0] in _LITERAL for rest in rests):
        return "(?:" + "|".join(rests) + ")"
    children: dict[str, list[str]] = {}
    for rest in rests:
        children.setdefault(rest[0], []).append(rest[1:])
    branches = [char + _factored(below) for char, below in children.items()]
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


def _trie(words: Sequence[str]) -> str:
    """A regex matching any of ``words`` (letters and digits), the longest one where several fit.

    Shaped as a trie: each character is tried once whatever the number of
    words, and a greedy optional group prefers the longer word.
    """
    children: dict[str, list[str]] = {}
    for word in words:
        if word:
            children.setdefault(word[0], []).append(word[1:])
    branches = [char + _trie(rest) for char, rest in sorted(children.items())]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if "" in words else body
