"""A zone of text as the words and clause boundaries every rule reads, mapped back to its lines."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from types import MappingProxyType

from maild.rules.clitics import enclitics
from maild.rules.loader import Rules
from maild.rules.textclean import Line

# The look-behind starts an address only where a run of address characters starts: linear, not
# quadratic, on a long run of letters with no "@".
# An address whose domain is left out as understood ("summer-school-2026@", "l.rossi@") is an address too: its
# local part is a name, not words of the sentence ("le liste (a-2026@ e b-2026@) si possono eliminare").
_EMAIL = re.compile(r"(?<![a-z0-9._%+=-])[a-z0-9._%+=-]+@(?:[a-z0-9-]+(?:\.[a-z0-9-]+)+|(?![a-z0-9._-]))")
_URL = re.compile(r"(?:https?://|www\.|mailto:)\S+")
_QUOTED = re.compile(r'"[^"\n]{1,200}"')
_ONE_WORD = re.compile(r"[a-z]{3,30}")
_ELISION = re.compile(r"[\[(]\s*(?:\.{2,}|\u2026)\s*[\])]")
"""A transcriber's mark for words left out ("la casella [...] scaduta"): a gap in a clause, not its end."""
_SPACED = re.compile(r"(?<![a-z0-9])[a-z](?: [a-z]){2,}(?![a-z0-9])")
"""A word set letter by letter for emphasis, as on a typewriter ("N O N chiudete"): read as the word."""
_TAG = re.compile(r"<(?!emailaddr>)/?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>")
# (needed substring, pattern, replacement): a pattern is not run on a text without its substring.
_CONTRACTIONS = (("n't", re.compile(r"\bcan't\b"), "can not"), ("n't", re.compile(r"\bwon't\b"), "will not"),
                 ("n't", re.compile(r"n't\b"), " not"), ("e-mail", re.compile(r"\be-mail"), "email"))
# A "." "," or ":" right before a letter or digit ("3.000", "b.bonetti") joins, it does not separate:
# it is no token at all. ``[^\W_]`` is what ``str.isalnum`` accepts, one character at a time.
_TOKEN = re.compile(r"[a-z0-9]+|[.,:](?![^\W_])|[;!?\u2022]|(?<!\S)-+(?!\S)")
PARAGRAPH = "|"
_ITEM = re.compile(r"\s*(?:\d{1,3}|[a-z])\)\s")
"""A list item's marker at a line's start ("2) resettare…", "b) chiudere…"): the item is a clause of its own, as
after "2." or "- " ("1) nessuna azione da parte vostra" denies nothing of item 2)."""


_NOTHING_REREAD: Mapping[int, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Canon:
    """A zone as words and clause boundaries joined by single spaces.

    ``starts[i]`` is the offset of token ``i`` in ``text`` and ``lines[i]`` the
    body line it came from, so a regex match maps back to words and lines.
    """

    text: str
    tokens: tuple[str, ...]
    starts: tuple[int, ...]
    lines: tuple[int, ...]
    at: Mapping[str, Sequence[int]]
    """Where each word starts (``Lexicon.positions``): the only offsets a template is tried at."""
    words: frozenset[str]
    """The words of ``at``: a template that needs another word cannot match and is not run."""
    reread: Mapping[int, str] = field(default_factory=lambda: _NOTHING_REREAD)
    """The words read as another (``rules.tolerance``), by token index: what the sender wrote."""

    def token_at(self, offset: int) -> int:
        return bisect_right(self.starts, offset) - 1

    def token_after(self, offset: int) -> int:
        return bisect_left(self.starts, offset)


SENTENCE_END = frozenset({".", "!", "?", PARAGRAPH})


def canon(lines: Iterable[Line], rules: Rules) -> Canon:
    stream: list[str] = []
    numbers: list[int] = []
    after_boundary = True  # no boundary at the start, nor two in a row
    budget = rules.max_chars
    for ln in lines:
        if budget <= 0:
            break
        folded = ln.folded[:budget]
        budget -= len(folded) + 1
        words = tokens(folded, rules.abbreviations) if folded.strip() else [PARAGRAPH]
        kept = len(stream)
        for word in words:
            boundary = not word[0].isalnum()  # is_boundary, inlined: this loop sees every word
            if boundary and after_boundary:
                continue
            after_boundary = boundary
            stream.append(word)
        numbers.extend([ln.number] * (len(stream) - kept))
    starts = _starts(stream)
    text = " ".join(stream)
    at = rules.lexicon.positions(text, stream, starts)
    canon = Canon(text, tuple(stream), tuple(starts), tuple(numbers), at, frozenset(at))
    return _reread(canon, rules)


def _reread(canon: Canon, rules: Rules) -> Canon:
    """The zone with pronoun clusters reduced ("cambiatemela": "cambiatela") and the words the tolerance
    reads as a privileged action ("cancillatila") replaced; only the latter are marked as reread."""
    grammar = enclitics(canon.words, rules.lexicon.longest_stem)
    words = frozenset(grammar.get(word, word) for word in canon.words) if grammar else canon.words
    new = {} if rules.tolerance is None else rules.tolerance.reread(words)
    if not new and not grammar:
        return canon
    tokens = [new.get(token, token) for token in (grammar.get(token, token) for token in canon.tokens)]
    starts = _starts(tokens)
    text = " ".join(tokens)
    at = rules.lexicon.positions(text, tokens, starts)
    reread = MappingProxyType({i: token for i, token in enumerate(canon.tokens) if grammar.get(token, token) in new})
    return Canon(text, tuple(tokens), tuple(starts), canon.lines, at, frozenset(at), reread)


def _starts(tokens: Sequence[str]) -> list[int]:
    """Where each token starts in the tokens joined by single spaces."""
    starts = list(accumulate([len(token) + 1 for token in tokens], initial=0))
    starts.pop()  # the offset after the last token
    return starts


def _quoted(match: re.Match[str]) -> str:
    """A quoted span's placeholder; one word in quotes is the writer's own word, marked as unsure, and stays read."""
    inside = match.group()[1:-1].strip()
    return f" {inside} " if _ONE_WORD.fullmatch(inside) else " quotedtext "


def _joined(match: re.Match[str]) -> str:
    return match.group().replace(" ", "")


def tokens(folded: str, abbreviations: frozenset[str]) -> list[str]:
    """Words, plus punctuation that really ends a clause.

    A "." inside "3.000", "sig.ra" or "b.bonetti", or after "dott"/"Dr" or an
    initial, is not a boundary; addresses and links become one placeholder
    word so their parts ("pec", "lista") are not read as words. A span in
    double quotes is a literal value or a quotation ("Noemi Marras", a lure's
    "your account will be suspended"), never the sender's request. A table's
    "|" separates the clauses of one row ("Aggiungere | Omar Haddad | omar@...").
    """
    text = folded
    # Each pattern needs a character or string the test looks for first: most lines have none of them.
    if "@" in text:
        text = _EMAIL.sub(" emailaddr ", text)
    if "://" in text or "www." in text or "mailto:" in text:
        text = _URL.sub(" urladdr ", text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if '"' in text:
        text = _QUOTED.sub(_quoted, text)
    if "[" in text or "(" in text:
        text = _ELISION.sub(" ", text)
    text = _SPACED.sub(_joined, text)
    if "|" in text:
        text = text.replace("|", " , ")  # a table's cells are clauses of one row, not paragraphs
    for needed, pattern, replacement in _CONTRACTIONS:
        if needed in text:
            text = pattern.sub(replacement, text)
    tokens = _TOKEN.findall(text)
    if ")" in text and _ITEM.match(text):
        tokens.insert(0, ".")
    if "." not in text and "-" not in text:
        return tokens
    out: list[str] = []
    for token in tokens:
        if token == "." and out and (out[-1] in abbreviations or (len(out[-1]) == 1 and out[-1].isalpha())):
            continue
        out.append("." if token[0] == "-" else token)
    return out


def is_boundary(token: str) -> bool:
    return not token[0].isalnum()
