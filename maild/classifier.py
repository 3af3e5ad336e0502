"""Classify a human request: anagrafica, password_reset, lifecycle or other.

A generic engine over the rules data (``maild.rules``): nothing here knows a
word of Italian or English. The steps, each a small pure function:

1. ``textclean.clean`` splits the body into the sender's own lines and the
   quoted/forwarded history (signatures and disclaimers dropped from both).
2. The history counts only when the sender adopts it ("autorizzo", "please
   proceed with the request below"), unless a blocker ("phishing") says the
   sender forwards it as a specimen rather than as a request.
3. Each zone (subject, body) becomes a canonical word stream; every rule's
   templates run over it. A hit whose action is preceded by a negation cue in
   the same clause ("la casella NON deve essere disattivata") or followed by
   one ("il reset non serve") is reported but does not count.
4. The body decides when some category reaches the threshold there; the
   subject is used only when the body carries no decisive signal, and a
   reply/forward subject ("Re:", "I:") is quoted context, not a request.
5. Among the categories that reach the threshold, a privileged one wins
   (fail closed); otherwise the highest score, ties broken by precedence.

The language is the one the requester wrote in: stop-word counts over their
own text, with the message's language hints only as a tie-breaker.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from maild.records import Category, Classification, ParsedMessage
from maild.rules import Negation, Rule, Rules
from maild.rules.textclean import Line, clean, fold

# The look-behind starts an address only where a run of address characters starts: linear, not
# quadratic, on a long run of letters with no "@".
_EMAIL = re.compile(r"(?<![a-z0-9._%+=-])[a-z0-9._%+=-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_URL = re.compile(r"(?:https?://|www\.|mailto:)\S+")
_QUOTED = re.compile(r'"[^"\n]{1,200}"')
_TAG = re.compile(r"<(?!emailaddr>)/?[a-z][a-z0-9]*(?:\s[^<>]*)?/?>")
# (needed substring, pattern, replacement): a pattern is not run on a text without its substring.
_CONTRACTIONS = (("n't", re.compile(r"\bcan't\b"), "can not"), ("n't", re.compile(r"\bwon't\b"), "will not"),
                 ("n't", re.compile(r"n't\b"), " not"), ("e-mail", re.compile(r"\be-mail"), "email"))
# A "." "," or ":" right before a letter or digit ("3.000", "b.bonetti") joins, it does not separate:
# it is no token at all. ``[^\W_]`` is what ``str.isalnum`` accepts, one character at a time.
_TOKEN = re.compile(r"[a-z0-9]+|[.,:](?![^\W_])|[;!?|\u2022]|(?<!\S)-+(?!\S)")
_PARAGRAPH = "|"
_SNIPPET = 60


@dataclass(frozen=True, slots=True)
class _Canon:
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

    def token_at(self, offset: int) -> int:
        return bisect_right(self.starts, offset) - 1

    def token_after(self, offset: int) -> int:
        return bisect_left(self.starts, offset)


@dataclass(frozen=True, slots=True)
class _Hit:
    rule: Rule
    zone: str
    token: int
    line: int
    snippet: str
    cue: str | None


def classify(message: ParsedMessage, rules: Rules, default_language: str = "it") -> Classification:
    """Classify a parsed message (see ``classify_text``)."""
    result = classify_text(message.subject, message.body_text, message.language_hints, rules, default_language)
    if not message.body_from_html:
        return result
    return replace(result, reasons=("body read from the HTML part: no text part, or one holding a fraction "
                                    "of its words", *result.reasons))


def classify_text(subject: str, body: str, language_hints: Sequence[str], rules: Rules,
                  default_language: str = "it") -> Classification:
    """Classify from plain strings: the pure core of ``classify``."""
    cleaned = clean(body, rules.cleaning)
    reasons = list(cleaned.notes)
    own = _canon(cleaned.own, rules)
    adopted = bool(cleaned.quoted) and _adopted(own, rules, reasons)
    lines = (*cleaned.own, Line(0, "", ""), *cleaned.quoted) if adopted else cleaned.own
    body_hits = _hits(_canon(lines, rules) if adopted else own, "body", rules)
    subject_hits = _subject_hits(subject, adopted, rules, reasons)
    category = _decide(body_hits, subject_hits, rules, reasons)
    words = [t for t in own.tokens if not _is_boundary(t)] or _canon(_subject_lines(subject), rules).tokens
    language, why = _language(words, language_hints, rules, default_language)
    reasons.append(why)
    text = "\n".join(ln.text for ln in lines).strip()
    return Classification(category=category, language=language, reasons=tuple(reasons), text=text)


def _subject_lines(subject: str) -> tuple[Line, ...]:
    return (Line(0, subject, fold(subject)),) if subject.strip() else ()


# -- canonical text --------------------------------------------------------


def _canon(lines: Iterable[Line], rules: Rules) -> _Canon:
    tokens: list[str] = []
    numbers: list[int] = []
    starts: list[int] = []
    position = 0
    after_boundary = True  # no boundary at the start, nor two in a row
    budget = rules.max_chars
    for ln in lines:
        if budget <= 0:
            break
        folded = ln.folded[:budget]
        budget -= len(folded) + 1
        words = _tokens(folded, rules.abbreviations) if folded.strip() else [_PARAGRAPH]
        for word in words:
            boundary = not word[0].isalnum()  # _is_boundary, inlined: this loop sees every word
            if boundary and after_boundary:
                continue
            after_boundary = boundary
            tokens.append(word)
            numbers.append(ln.number)
            starts.append(position)
            position += len(word) + 1
    text = " ".join(tokens)
    at = rules.lexicon.positions(text, tokens, starts)
    return _Canon(text, tuple(tokens), tuple(starts), tuple(numbers), at, frozenset(at))


def _tokens(folded: str, abbreviations: frozenset[str]) -> list[str]:
    """Words, plus punctuation that really ends a clause.

    A "." inside "3.000", "sig.ra" or "b.bonetti", or after "dott"/"Dr" or an
    initial, is not a boundary; addresses and links become one placeholder
    word so their parts ("pec", "lista") are not read as words. A span in
    double quotes is a literal value or a quotation ("Noemi Marras", a lure's
    "your account will be suspended"), never the sender's request.
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
        text = _QUOTED.sub(" quotedtext ", text)
    for needed, pattern, replacement in _CONTRACTIONS:
        if needed in text:
            text = pattern.sub(replacement, text)
    tokens = _TOKEN.findall(text)
    if "." not in text and "-" not in text:
        return tokens
    out: list[str] = []
    for token in tokens:
        if token == "." and out and (out[-1] in abbreviations or (len(out[-1]) == 1 and out[-1].isalpha())):
            continue
        out.append("." if token[0] == "-" else token)
    return out


def _is_boundary(token: str) -> bool:
    return not token[0].isalnum()


# -- rule matching -----------------------------------------------------------


def _hits(canon: _Canon, zone: str, rules: Rules) -> list[_Hit]:
    hits: list[_Hit] = []
    for position in rules.index.candidates(canon.words):
        rule, template = rules.templates[position]
        if zone not in rule.zones:
            continue
        for match in template.matches(canon.text, canon.words, canon.at):
            hits.append(_hit(canon, zone, rule, match, rules.negation))
    return hits


def _hit(canon: _Canon, zone: str, rule: Rule, match: re.Match[str], negation: Negation) -> _Hit:
    has_action = "act" in match.re.groupindex and match.start("act") >= 0
    token = canon.token_at(match.start("act") if has_action else match.start())
    cue = _negated(canon, token, canon.token_after(match.end()), negation) if rule.negatable else None
    snippet = match.group()
    if len(snippet) > _SNIPPET:
        snippet = snippet[:_SNIPPET] + "..."
    return _Hit(rule, zone, token, canon.lines[token], snippet, cue)


def _negated(canon: _Canon, action: int, after: int, negation: Negation) -> str | None:
    """The cue that cancels the action at token ``action``, or None.

    Each group looks back over its own window; every window is a prefix of
    the widest one read backwards, so that clause is cut once, and a window
    shared by several groups is joined and cleared of exceptions once.
    """
    back = _clause(canon.tokens[max(0, action - negation.reach):action][::-1], negation.terminators)
    windows: dict[int, str] = {}
    for group in negation.cues:
        before = back[:group.window]
        if group.stops:
            before = _clause(before, group.stops)
        if not before:
            continue  # every cue needs at least one word
        window = windows.get(len(before))
        if window is None:
            window = " ".join(reversed(before))
            if negation.exceptions is not None:
                window = negation.exceptions.sub(" ", window)
            windows[len(before)] = window
        cue = group.pattern.search(window)
        if cue is not None:
            return cue.group()
    if negation.post is None:
        return None
    following = " ".join(_clause(canon.tokens[after:after + negation.post_window], negation.terminators))
    post = negation.post.search(following)
    return None if post is None else post.group()


def _clause(tokens: Sequence[str], terminators: frozenset[str]) -> list[str]:
    """The leading run of ``tokens`` up to a clause boundary or terminator word."""
    out: list[str] = []
    for token in tokens:
        if _is_boundary(token) or token in terminators:
            break
        out.append(token)
    return out


def _subject_hits(subject: str, adopted: bool, rules: Rules, reasons: list[str]) -> list[_Hit]:
    folded = fold(subject)
    if not folded.strip():
        return []
    if rules.reply_prefix.match(folded) and not adopted:
        reasons.append("subject not used: a reply/forward subject is quoted context")
        return []
    stripped = rules.subject_strip.sub("", folded)
    return _hits(_canon((Line(0, stripped, stripped),), rules), "subject", rules)


# -- adoption ------------------------------------------------------------------


def _adopted(own: _Canon, rules: Rules, reasons: list[str]) -> bool:
    """True when the sender makes the quoted/forwarded request their own."""
    adoption = rules.adoption
    if adoption.blockers is not None:
        blocker = adoption.blockers.search(own.text)
        if blocker is not None:
            reasons.append(f"quoted text not adopted: '{blocker.group()}' marks it as a specimen")
            return False
    for position in adoption.index.candidates(own.words):
        template = adoption.phrases[position]
        for match in template.matches(own.text, own.words, own.at):
            token = own.token_at(match.start("act") if "act" in template.pattern.groupindex else match.start())
            cue = _negated(own, token, own.token_after(match.end()), rules.negation)
            if cue is None:
                reasons.append(f"quoted request adopted: '{match.group()}' in body line {own.lines[token]}")
                return True
            reasons.append(f"negated: '{cue} ... {match.group()}' in body line {own.lines[token]} (adoption)")
    return False


# -- decision ------------------------------------------------------------------


def _scores(hits: Iterable[_Hit], reasons: list[str]) -> dict[Category, int]:
    """Sum of weights per category; one word counts once per category (its best rule)."""
    best: dict[tuple[Category, int], _Hit] = {}
    negated: dict[tuple[Category, int], _Hit] = {}
    for hit in hits:
        key = (hit.rule.category, hit.token)
        kept = negated if hit.cue is not None else best
        if key not in kept or hit.rule.weight > kept[key].rule.weight:
            kept[key] = hit
    for key, hit in negated.items():
        if key not in best:
            reasons.append(f"negated: '{hit.cue} ... {hit.snippet}' in {_where(hit)} ({hit.rule.id})")
    scores: dict[Category, int] = {}
    for hit in best.values():
        where = _where(hit)
        reasons.append(f"{hit.rule.category.value}: {hit.rule.id} '{hit.snippet}' in {where} "
                       f"(weight {hit.rule.weight})")
        scores[hit.rule.category] = scores.get(hit.rule.category, 0) + hit.rule.weight
    return scores


def _new_evidence(subject_hits: list[_Hit], body_hits: list[_Hit], reasons: list[str]) -> list[_Hit]:
    """Subject hits of rules the body has not already matched.

    A subject that names the body's topic again ("Outlook chiede la password"
    over a body that mentions the password) adds no evidence: the same words
    matched by the same rule twice are still one mention, not a request.
    """
    seen = {(hit.rule.id, hit.snippet) for hit in body_hits if hit.cue is None}
    kept = [hit for hit in subject_hits if (hit.rule.id, hit.snippet) not in seen]
    for hit in subject_hits:
        if (hit.rule.id, hit.snippet) in seen:
            reasons.append(f"subject repeats the body: '{hit.snippet}' ({hit.rule.id}) counted once")
    return kept


def _where(hit: _Hit) -> str:
    return f"body line {hit.line}" if hit.zone == "body" else hit.zone


def _decide(body_hits: list[_Hit], subject_hits: list[_Hit], rules: Rules, reasons: list[str]) -> Category:
    body = _scores(body_hits, reasons)
    if any(score >= rules.threshold for score in body.values()):
        if _scores(subject_hits, []):
            reasons.append("subject ignored: body decides")
        scores = body
    else:
        subject = _scores(_new_evidence(subject_hits, body_hits, reasons), reasons)
        if subject:
            reasons.append("subject used: the body carries no decisive signal")
        scores = {c: body.get(c, 0) + subject.get(c, 0) for c in {*body, *subject}}
    present = {c: s for c, s in scores.items() if s >= rules.threshold}
    if not present:
        reasons.append(f"category other: no request signal reaches the threshold {rules.threshold}")
        return Category.OTHER
    privileged = {c: s for c, s in present.items() if c.privileged}
    pool = privileged or present
    winner = max(pool, key=lambda c: (pool[c], -rules.precedence.index(c)))
    summary = ", ".join(f"{c.value}={s}" for c, s in sorted(present.items(), key=lambda kv: -kv[1]))
    if privileged and len(present) > len(privileged):
        reasons.append(f"mixed request ({summary}): privileged {winner.value} wins (fail closed)")
    else:
        reasons.append(f"category {winner.value} ({summary})")
    return winner


# -- language ------------------------------------------------------------------


def _language(tokens: Sequence[str], hints: Sequence[str], rules: Rules, default: str) -> tuple[str, str]:
    """(language, reason): most stop-words wins; hints, then the default, break ties."""
    counts = {code: sum(1 for t in tokens if t in words) for code, words in rules.stopwords}
    ranked = sorted(((c, n) for c, n in counts.items() if n), key=lambda kv: -kv[1])
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        return ranked[0][0], f"language {ranked[0][0]}: stop-words " + ", ".join(f"{c}={n}" for c, n in ranked)
    tied = {code for code, n in ranked if n == ranked[0][1]} if ranked else set(counts)
    for hint in hints:
        code = hint.strip().lower()[:2]
        if code in tied:
            return code, f"language {code}: stop-words tie, message language hint {hint!r}"
    return default, f"language {default}: no decisive stop-words or hint, default"
