"""Reading regional and misspelt forms of the privileged actions as the words the rules know.

A request for a privileged action written in dialect ("cancillatila" for
"cancellatela", Sicilian; "sblocar", Venetian) or with a slip of the keyboard
("sblocate") must not fall through to ``other``: that fails open. Listing
every form by hand does not generalize; instead a word the rules do not know
is read as one of a few listed terms when it differs from it only in ways
regional Italian and typing do: an "e" written "i" and an "o" written "u"
(the southern vowels), a consonant doubled or single, "ll" written "dd"
(Sicilian), and an "m" scanned as "rn" (a letter read by OCR: "rirnuovere").
Nothing else: every other letter must match, so ordinary words stay what they
are ("chiedete" is not "chiudete").

A word typed in a hurry or scrambled on purpose keeps its first and last
letters and shuffles the rest ("cacnellare", "csaella", "rbruica"); the eye
reads it as the word it stands for, and so must the rules. Any spelled-out word
or stem is read back from such a form through a key (first letter, last
letter, inner letters sorted, length): a long word from any shuffle, a short one
only from one swap of neighbouring letters, and never when two spelled-out
words share the key, so one real word is never taken for another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias

from maild.rules.patterns import guard

_VOWELS = {"e": "[ei]", "o": "[ou]"}
_MEMO_LIMIT = 100_000

Key: TypeAlias = tuple[str, str, str, int]


@dataclass(frozen=True, slots=True)
class Scramble:
    """The spelled-out words and stems by their scrambled key, and how short a scramble may be."""

    words: Mapping[Key, str]
    stems: Mapping[Key, str]
    """By the key of the stem's letters; the word's letters after it are its ending, as written."""
    stem_lengths: tuple[int, ...]
    """The lengths of the stems, longest first."""
    swap_length: int
    """The shortest word read back from one swap of neighbouring inner letters."""
    shuffle_length: int
    """The shortest word read back from any shuffle of its inner letters."""

    def read(self, word: str) -> str | None:
        """What ``word`` stands for when it is a spelled-out word or stem with its inner letters shuffled."""
        if len(word) < self.swap_length:
            return None
        term = self.words.get(_key(word))
        if term is not None and self._fits(word, term):
            return term
        for length in self.stem_lengths:
            if length <= len(word):
                term = self.stems.get(_key(word[:length]))
                if term is not None and self._fits(word[:length], term):
                    return term + word[length:]
        return None

    def _fits(self, written: str, term: str) -> bool:
        if written == term:
            return False
        if len(term) >= self.shuffle_length:
            return True
        diff = [i for i, (a, b) in enumerate(zip(written, term, strict=True)) if a != b]
        return len(diff) == 2 and diff[1] == diff[0] + 1


@dataclass(frozen=True, slots=True)
class Tolerance:
    """The listed terms, their tolerant regex, and the words never reread."""

    words: Mapping[str, re.Pattern[str]]
    """By first letter, one alternative per whole-word term, in group ``t<i>``: tried first, even on a word a
    stem matches as written ("disattivatila" is "disattivatela", not only "disattiv*")."""
    stems: Mapping[str, re.Pattern[str]]
    """By first letter, one alternative per stem, its own letters in group ``t<i>``: longest first."""
    terms: tuple[str, ...]
    """The term of group ``t<i>``, without its ``*``."""
    exact: re.Pattern[str]
    """Every stem of the rules as written, trie-shaped: a word one of them starts is read as it is."""
    known: frozenset[str]
    """Words the rules or the stop-word lists spell out: read as written, never as another."""
    min_length: int
    scramble: Scramble
    _plain: set[str] = field(default_factory=set, compare=False, repr=False)
    """The known words and the words already seen that stand for nothing else: most of any text, skipped
    in one set difference."""
    _read: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def reread(self, words: frozenset[str]) -> dict[str, str]:
        """The words of ``words`` that stand for a term, each with what it is read as."""
        plain = self._plain
        if not plain:
            plain |= self.known
        fresh = words - plain
        out = {}
        for word in fresh:
            read = self._read.get(word)
            if read is None:
                read = self._match(word) if len(word) >= self.min_length else None
                if read is None and not self.exact.match(word):
                    read = self.scramble.read(word)
                if len(plain) + len(self._read) >= _MEMO_LIMIT:  # a bounded memo: start again from the known
                    plain.clear()
                    plain |= self.known
                    self._read.clear()
                if read is None:
                    plain.add(word)
                    continue
                self._read[word] = read
            out[word] = read
        return out

    def _match(self, word: str) -> str | None:
        pattern = self.words.get(word[0])
        match = None if pattern is None else pattern.fullmatch(word)
        if match is None:
            pattern = self.stems.get(word[0])
            if pattern is None or self.exact.match(word):
                return None
            match = pattern.fullmatch(word)
        if match is None or match.lastgroup is None:
            return None
        read = self.terms[int(match.lastgroup[1:])] + word[match.end(match.lastgroup):]
        return None if read == word else read


def tolerance(terms: Iterable[str], spelled: Iterable[str], min_length: int,
              scramble: tuple[int, int]) -> Tolerance:
    """Compile ``terms`` (folded words, ``stem*`` for any continuation) into a ``Tolerance``.

    ``spelled`` are every one-word term of the rules and the stop-words: a word
    they match as written ("suspended", "sospesa") is never reread, and a shuffle of
    their inner letters is read back as them when at least ``scramble`` (one swap, any
    shuffle) letters long.
    """
    ordered = sorted(set(terms), key=lambda t: (-len(t.rstrip("*")), t))
    # A whole word's last letter is its ending, written as is: "eliminarli" (them, masculine) is not
    # "eliminarle" (them, feminine).
    words = [(term, f"(?P<t{i}>{_tolerant(term[:-1])}{re.escape(term[-1])})") for i, term in enumerate(ordered)
             if not term.endswith("*")]
    stems = [(term, f"(?P<t{i}>{_tolerant(term[:-1])})[a-z0-9]*") for i, term in enumerate(ordered)
             if term.endswith("*")]
    spelled = set(spelled)
    return Tolerance(words=_by_first(words), stems=_by_first(stems), terms=tuple(t.rstrip("*") for t in ordered),
                     exact=re.compile(guard(term for term in spelled if term.endswith("*")) or "(?!)"),
                     known=frozenset(term for term in spelled if not term.endswith("*")), min_length=min_length,
                     scramble=scrambled(spelled, *scramble))


def scrambled(spelled: Iterable[str], swap_length: int, shuffle_length: int) -> Scramble:
    """The ``Scramble`` of ``spelled`` (words, ``stem*``): a key two of them share reads as neither."""
    words: dict[Key, set[str]] = {}
    stems: dict[Key, set[str]] = {}
    for term in spelled:
        letters = term.rstrip("*")
        if len(letters) >= swap_length and letters.isalpha():
            (stems if term.endswith("*") else words).setdefault(_key(letters), set()).add(letters)
    return Scramble(words=_unique(words), stems=_unique(stems),
                    stem_lengths=tuple(sorted({key[3] for key in stems}, reverse=True)),
                    swap_length=swap_length, shuffle_length=shuffle_length)


def _unique(keyed: Mapping[Key, set[str]]) -> Mapping[Key, str]:
    return MappingProxyType({key: next(iter(terms)) for key, terms in keyed.items() if len(terms) == 1})


def _key(word: str) -> Key:
    """First letter, last letter, the letters between sorted, and length: the same for every shuffle inside."""
    return word[0], word[-1], "".join(sorted(word[1:-1])), len(word)


def _by_first(alternatives: Iterable[tuple[str, str]]) -> Mapping[str, re.Pattern[str]]:
    """One regex per letter a word may start with, holding only the alternatives that can start so."""
    grouped: dict[str, list[str]] = {}
    for term, regex in alternatives:
        for first in _VOWELS.get(term[0], term[0]).strip("[]"):
            grouped.setdefault(first, []).append(regex)
    return MappingProxyType({first: re.compile("|".join(regexes)) for first, regexes in grouped.items()})


def _tolerant(word: str) -> str:
    """A regex for ``word`` and its regional or misspelt forms (see the module docstring)."""
    out = []
    for run in re.finditer(r"(.)\1*", word):
        char = run.group(1)
        if char in _VOWELS:
            out.append(_VOWELS[char] * len(run.group()))
        elif char in "aiu":
            out.append(run.group())
        elif char == "l" and len(run.group()) == 2:
            out.append("(?:ll?|dd)")
        elif char == "m":
            out.append("(?:m|rn){1,2}")
        else:
            out.append(f"{re.escape(char)}{{1,2}}")
    return "".join(out)
