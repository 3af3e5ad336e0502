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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial

from maild.records import Category, Classification, ParsedMessage
from maild.rules import Rules, marks, replies, zones
from maild.rules.canonical import Canon, canon
from maild.rules.hits import Hit, hits, where
from maild.rules.textclean import CleanedText, Line, clean, fold


def classify(message: ParsedMessage, rules: Rules, default_language: str = "it") -> Classification:
    """Classify a parsed message (see ``classify_text``)."""
    names = tuple(a.filename for a in message.attachments if a.filename)
    result = classify_text(message.subject, message.body_text, message.language_hints, rules, default_language,
                           names)
    if not message.body_from_html:
        return result
    return replace(result, reasons=("body read from the HTML part: no text part, or one holding a fraction "
                                    "of its words", *result.reasons))


def classify_text(subject: str, body: str, language_hints: Sequence[str], rules: Rules,
                  default_language: str = "it", attachment_names: Sequence[str] = ()) -> Classification:
    """Classify from plain strings: the pure core of ``classify``."""
    cleaned = clean(body, rules.cleaning)
    reasons = list(cleaned.notes)
    own = canon(cleaned.own, rules)
    quote = _quote(cleaned, own, rules, reasons)
    declared = _declared(own, rules, reasons)
    nothing = None if declared is None else declared.group()
    lines, body_hits = _body_hits(cleaned, own, quote, rules, reasons, nothing)
    if declared is not None:  # said on one item of a list, it does not speak for the list's other items
        items = marks.sibling_items(own.lines[own.token_at(declared.start())], cleaned.own)
        body_hits = marks.told_beside_item(body_hits, items, nothing, reasons)
    body_hits = marks.renewed(body_hits, cleaned.own, rules, reasons)
    seen = body_hits  # before the marks: a frame a mark sets aside was still seen, so no word model is asked
    body_hits = _marked(body_hits, declared, cleaned.own, lines, rules, reasons)
    subject_hits = _subject_hits(subject, cleaned, own, quote, attachment_names, rules, reasons, nothing)
    topic = any(h.rule.category.privileged for h in (*seen, *subject_hits))
    decided = _decide(body_hits, subject_hits, rules, reasons, own, _lead(subject, cleaned.own, quote, rules))
    language, why = _language(_language_words(own, subject, rules), language_hints, rules, default_language)
    reasons.append(why)
    text = "\n".join(ln.text for ln in lines).strip()
    return Classification(category=decided.category, language=language, reasons=tuple(reasons), text=text,
                          review=decided.review, privileged_evidence=decided.privileged_evidence,
                          privileged_topic=topic, own_text="\n".join(ln.text for ln in cleaned.own).strip())


@dataclass(frozen=True, slots=True)
class _Quote:
    """What the sender does with the quoted text: adopts it as their own request, answers its question, or neither."""

    adopted: bool
    answers: tuple[replies.Answer, ...]
    """One answer to the quoted question, or one per question when the sender types under each in turn."""


def _quote(cleaned: CleanedText, own: Canon, rules: Rules, reasons: list[str]) -> _Quote:
    """An adoption is read first; only a quote not adopted can be answered."""
    adopted = bool(cleaned.quoted or cleaned.quoted_subject) and replies.adopted(own, rules, reasons)
    if adopted or not cleaned.quoted:
        return _Quote(adopted, ())
    inline = replies.inline_answers(cleaned.own, cleaned.quoted, rules, reasons)
    one = replies.answer(own, cleaned.quoted, rules, reasons) if not inline else None
    return _Quote(adopted, inline or (() if one is None else (one,)))


def _declared(own: Canon, rules: Rules, reasons: list[str]) -> re.Match[str] | None:
    """The sender's own phrase saying the message asks for nothing, or None: every reader of a hit weighs it."""
    declared = rules.acts.no_request.search(own.text)
    if declared is not None:
        reasons.append(f"act report: '{declared.group()}' says the message asks for nothing; "
                       "only actions with a request cue in their clause count")
    return declared


def _unquoted(line: Line) -> Line:
    """An adopted quote's line wholly in double quotes is a comment the sender takes up, not a literal value."""
    inner = line.folded.strip()
    if len(inner) > 2 and inner[0] == inner[-1] == '"' and inner.count('"') == 2:
        return Line(line.number, line.text, f" {inner[1:-1]} ")
    return line


def _body_hits(cleaned: CleanedText, own: Canon, quote: _Quote, rules: Rules, reasons: list[str],
               nothing: str | None) -> tuple[tuple[Line, ...], list[Hit]]:
    """The body's lines as read (the sender's own, with the quote they adopt or answer) and the hits on them."""
    lines = (*cleaned.own, Line(0, "", ""), *map(_unquoted, cleaned.quoted)) if quote.adopted else cleaned.own
    if quote.answers:
        lines = (*cleaned.own, *(ln for a in quote.answers for ln in (Line(0, "", ""), *a.question)))
    read = canon(lines, rules) if quote.adopted or quote.answers else own
    body_hits = hits(read, "body", rules, nothing)
    if quote.adopted and cleaned.older and not any(h.act == "request" and not h.rule.mention for h in body_hits):
        reasons.append("the adopted quote asks nothing itself: the thread's older messages are read")
        lines = (*lines, Line(0, "", ""), *cleaned.older)
        read = canon(lines, rules)
        body_hits = replies.withdrawn_below(hits(read, "body", rules, nothing), reasons)
    for one in quote.answers:
        body_hits = replies.answered(body_hits, one, read, reasons, rules.threshold)
    return lines, body_hits


def _marked(body_hits: list[Hit], declared: re.Match[str] | None, own: Sequence[Line], lines: Sequence[Line],
            rules: Rules, reasons: list[str]) -> list[Hit]:
    """The body's hits as the message's own marks read them: states, form boxes, stale fields, items done, faults."""
    body_hits = marks.declined_states(marks.asked_states(body_hits, declared, reasons), reasons, rules.negation.post)
    boxes = marks.form_boxes(lines, rules.acts)
    body_hits = marks.ticked(marks.unticked(body_hits, boxes, reasons), boxes, rules.threshold, reasons)
    stale = marks.stale_fields(own, lines, rules.acts)
    if stale:
        body_hits = marks.told_on(body_hits, stale, "form field disowned as stale", reasons)
    return marks.tool_faults(marks.done_items(body_hits, lines, rules, reasons, boxes), lines, rules, reasons)


def _subject_hits(subject: str, cleaned: CleanedText, own: Canon, quote: _Quote, attachment_names: Sequence[str],
                  rules: Rules, reasons: list[str], nothing: str | None) -> list[Hit]:
    """The hits of the zones read like a subject: a short body leaves the request to its attachments' names."""
    disowned = rules.acts.subject_disowned
    if disowned is not None and (said := disowned.search(own.text)) is not None:
        reasons.append(f"subject not used: the body sets it aside ('{said.group()}')")
        return []
    subject_hits = zones.subject_hits(subject, quote.adopted, rules, reasons, nothing)
    if quote.adopted and cleaned.quoted_subject:
        subject_hits += zones.quoted_subject_hits(cleaned.quoted_subject, rules, reasons, nothing)
    if attachment_names and sum(t[0].isalnum() for t in own.tokens) <= _SHORT_BODY_WORDS:
        subject_hits += zones.attachment_name_hits(attachment_names, rules, nothing)
    return subject_hits


def _lead(subject: str, own: Sequence[Line], quote: _Quote, rules: Rules) -> Callable[[], tuple[Hit, ...]] | None:
    """The subject read on into the body, run by ``_decide`` only when needed; a reply's subject is quoted context."""
    replied = quote.adopted or bool(quote.answers) or rules.reply_prefix.match(fold(subject)) is not None
    return None if replied else partial(zones.lead_hits, subject, own, rules)


def _language_words(own: Canon, subject: str, rules: Rules) -> Sequence[str]:
    """The sender's own words tell the language; a message with none has only its subject's."""
    return [t for t in own.tokens if t[0].isalnum()] or canon(_subject_lines(subject, rules), rules).tokens


def _subject_lines(subject: str, rules: Rules) -> tuple[Line, ...]:
    return (Line(0, subject, fold(subject, rules.cleaning.symbols)),) if subject.strip() else ()


_SHORT_BODY_WORDS = 8
"""A body this short ("Come da allegato.", "Questi tre, da cancellare.") leaves the request to its attachments."""


# -- decision ------------------------------------------------------------------


def _scores(hits: Iterable[Hit], reasons: list[str]) -> dict[Category, int]:
    """Sum of weights per category; one word counts once per category (its best rule).

    A mention inside a frame of its category is that frame's object, not a second signal: asked for, it adds
    nothing; negated or told ("my password will get expired"), it is not asked for either.
    """
    hits = list(hits)
    framed = {(hit.rule.category, token) for hit in hits if not hit.rule.mention
              for token in hit.span}
    best: dict[tuple[Category, int], Hit] = {}
    negated: dict[tuple[Category, int], Hit] = {}
    for hit in hits:
        key = (hit.rule.category, hit.token)
        if hit.rule.mention and hit.cue is None and key in framed:
            continue
        kept = negated if hit.cue is not None else best
        if key not in kept or hit.rule.weight > kept[key].rule.weight:
            kept[key] = hit
    for key, hit in negated.items():
        if key not in best:
            label = "negated:" if hit.act == "negation" else f"not requested, act {hit.act}:"
            reasons.append(f"{label} '{hit.cue} ... {hit.snippet}' in {where(hit)} ({hit.rule.id})")
    scores: dict[Category, int] = {}
    for hit in best.values():
        place = where(hit)
        read = f", reading {', '.join(hit.reread)}" if hit.reread else ""
        reasons.append(f"{hit.rule.category.value}: act request, frame {hit.rule.id} '{hit.snippet}' in {place} "
                       f"(weight {hit.rule.weight}{read})")
        scores[hit.rule.category] = scores.get(hit.rule.category, 0) + hit.rule.weight
    return scores


def _new_evidence(subject_hits: list[Hit], body_hits: list[Hit], reasons: list[str], asks: bool) -> list[Hit]:
    """Subject hits of rules the body has not already matched, on topics the body does not decline.

    A subject that names the body's topic again ("Outlook chiede la password"
    over a body that mentions the password) adds no evidence: the same words
    matched by the same rule twice are still one mention, not a request. And
    a subject naming what the body only asks about, withdraws or reports
    ("tempi creazione casella" over "quanto ci vuole per creare una
    casella?") is the topic, not a request: the body wins over the subject,
    unless the body asks for something it names only by a pronoun ("comunque
    intanto fatelo"): then the subject may name it (fail closed).
    """
    seen = {(hit.rule.id, hit.snippet) for hit in body_hits if hit.cue is None}
    discussed = {} if asks else {hit.rule.category: hit for hit in body_hits if hit.cue is not None}
    kept = []
    for hit in subject_hits:
        if (hit.rule.id, hit.snippet) in seen:
            reasons.append(f"subject repeats the body: '{hit.snippet}' ({hit.rule.id}) counted once")
        elif hit.rule.category in discussed:
            told = discussed[hit.rule.category]
            reasons.append(f"subject names the topic the body does not ask for ({told.act} '{told.cue}'): "
                           f"'{hit.snippet}' ({hit.rule.id}) not counted")
        else:
            kept.append(hit)
    return kept


@dataclass(frozen=True, slots=True)
class _Decided:
    category: Category
    review: str
    privileged_evidence: Category | None


def _decide(body_hits: list[Hit], subject_hits: list[Hit], rules: Rules, reasons: list[str],
            own: Canon, lead: Callable[[], tuple[Hit, ...]] | None = None) -> _Decided:
    body = _scores(body_hits, reasons)
    from_subject = False
    source = "the subject alone"
    if any(score >= rules.threshold for score in body.values()):
        if any(hit.cue is None for hit in subject_hits):  # the subject would score: it is not needed
            reasons.append("subject ignored: body decides")
        scores = body
    else:
        asks = bool(subject_hits) and rules.acts.request_cues.search(own.text) is not None
        subject = _scores(_new_evidence(subject_hits, body_hits, reasons, asks), reasons)
        if any(hit.zone.startswith("the attachment") for hit in subject_hits if hit.cue is None):
            source = "the subject and the attachments' file names"
        if subject:
            reasons.append("subject used: the body carries no decisive signal")
        scores = {c: body.get(c, 0) + subject.get(c, 0) for c in {*body, *subject}}
        if not any(s >= rules.threshold for s in scores.values()) and lead is not None and (read := lead()):
            read_on = _scores(_new_evidence(list(read), body_hits, reasons, asks), reasons)
            source = "the subject read on into the body" if read_on else source
            scores = {c: scores.get(c, 0) + read_on.get(c, 0) for c in {*scores, *read_on}}
        from_subject = any(s >= rules.threshold for s in scores.values())
    present = {c: s for c, s in scores.items() if s >= rules.threshold}
    below = [c for c in scores if c.privileged and c not in present]
    framed = {hit.rule.category for hit in (*body_hits, *subject_hits)
              if hit.cue is None and not hit.rule.mention} if below else set()
    weak = max((c for c in below if c in framed), key=lambda c: scores[c], default=None)
    if not present:
        reasons.append(f"category other: no request signal reaches the threshold {rules.threshold}")
        return _Decided(Category.OTHER, _weak_review(weak, scores, reasons), weak)
    privileged = {c: s for c, s in present.items() if c.privileged}
    pool = privileged or present
    winner = max(pool, key=lambda c: (pool[c], -rules.precedence.index(c)))
    summary = ", ".join(f"{c.value}={s}" for c, s in sorted(present.items(), key=lambda kv: -kv[1]))
    if privileged and len(present) > len(privileged):
        reasons.append(f"mixed request ({summary}): privileged {winner.value} wins (fail closed)")
    else:
        reasons.append(f"category {winner.value} ({summary})")
    review = _review(winner, scores, from_subject, rules, source) or _reread_review(winner, (*body_hits, *subject_hits))
    if review:
        reasons.append(f"review: {review}")
    if winner.privileged:
        return _Decided(winner, review, None)
    return _Decided(winner, review or _weak_review(weak, scores, reasons), weak)


def _review(winner: Category, scores: Mapping[Category, int], from_subject: bool, rules: Rules,
            source: str = "the subject alone") -> str:
    """Why an operator should check the category first, or "" when the evidence is clear."""
    if from_subject:
        return f"category {winner.value} decided from {source}"
    rivals = [s for c, s in scores.items() if c is not winner and s >= rules.threshold]
    if rivals and scores[winner] - max(rivals) < rules.threshold:
        return f"narrow margin: {winner.value}={scores[winner]} against {max(rivals)}"
    return ""


def _reread_review(winner: Category, hits: Iterable[Hit]) -> str:
    """Why to check a category read from a word written otherwise ("cancillatila", "cacnellare"), or ""."""
    read = list(dict.fromkeys(word for hit in hits if hit.rule.category is winner and hit.cue is None
                              for word in hit.reread))
    if not read:
        return ""
    return f"category {winner.value} read from a regional, misspelt or scrambled word: {', '.join(read)}"


def _weak_review(weak: Category | None, scores: Mapping[Category, int], reasons: list[str]) -> str:
    if weak is None:
        return ""
    review = f"requested {weak.value} evidence below the threshold ({weak.value}={scores[weak]})"
    reasons.append(f"review: {review}")
    return review


# -- language ------------------------------------------------------------------


def _language(tokens: Sequence[str], hints: Sequence[str], rules: Rules, default: str) -> tuple[str, str]:
    """(language, reason): most stop-words wins; hints, then the default, break ties."""
    counts = {code: sum(map(words.__contains__, tokens)) for code, words in rules.stopwords}
    ranked = sorted(((c, n) for c, n in counts.items() if n), key=lambda kv: -kv[1])
    if ranked and (len(ranked) == 1 or ranked[0][1] > ranked[1][1]):
        return ranked[0][0], f"language {ranked[0][0]}: stop-words " + ", ".join(f"{c}={n}" for c, n in ranked)
    tied = {code for code, n in ranked if n == ranked[0][1]} if ranked else set(counts)
    for hint in hints:
        code = hint.strip().lower()[:2]
        if code in tied:
            return code, f"language {code}: stop-words tie, message language hint {hint!r}"
    return default, f"language {default}: no decisive stop-words or hint, default"
