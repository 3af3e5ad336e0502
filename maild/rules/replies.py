"""How a reply takes up the quoted text: adopting it, answering its question, or withdrawing in a thread."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from maild.records import Category
from maild.rules.canonical import SENTENCE_END, Canon, canon
from maild.rules.hits import Hit, clause, hits, negated, where
from maild.rules.loader import Rules
from maild.rules.textclean import Line

_LIMIT_REACH = 2
"""Words between "proceed only with" and the frame it names: an article, an adjective ("con la nuova ...")."""


def withdrawn_below(hits: list[Hit], reasons: list[str]) -> list[Hit]:
    """A thread reads newest first: an action of a category withdrawn in a newer message ("scratch my bit about the
    password") is withdrawn in the older ones below it too."""
    first: dict[Category, int] = {}
    for hit in hits:
        if hit.act == "withdrawal":
            first[hit.rule.category] = min(hit.token, first.get(hit.rule.category, hit.token))
    out = []
    for hit in hits:
        above = first.get(hit.rule.category)
        if above is None or hit.act != "request" or hit.token <= above:
            out.append(hit)
            continue
        reasons.append(f"withdrawn in a newer message above: '{hit.snippet}' in {where(hit)} ({hit.rule.id})")
        out.append(replace(hit, cue="withdrawn above", act="withdrawal"))
    return out


def adopted(own: Canon, rules: Rules, reasons: list[str]) -> bool:
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
            found = negated(own, token, own.token_after(match.end()), rules.negation)
            if found is not None:
                reasons.append(f"negated: '{found[1]} ... {match.group()}' in body line {own.lines[token]} (adoption)")
                continue
            frame = _limited_to(own, match, rules)
            if frame is not None:
                reasons.append(f"quoted text not adopted by '{match.group()}': it is limited to the sender's own "
                               f"'{frame.snippet}' in body line {frame.line}")
                continue
            reasons.append(f"quoted request adopted: '{match.group()}' in body line {own.lines[token]}")
            return True
    return False


@dataclass(frozen=True, slots=True)
class Answer:
    """A short reply that answers the quoted question: yes adopts what it names, no declines it."""

    said: str
    """The answer as written, folded ("si", "no")."""
    yes: bool
    question: tuple[Line, ...]
    """The quoted paragraphs that hold a question: what the answer answers."""
    kept: frozenset[str]
    """With a no, the words the answer keeps ("No, solo la lista"): a frame on them is still asked for."""
    turned: bool = False
    """A no that turns to a privileged action of its own ("No, but block it"): the question's frames stay asked."""


def answer(own: Canon, quoted: Sequence[Line], rules: Rules, reasons: list[str]) -> Answer | None:
    """The bare answer ("Sì, confermo.", "Yes please, both.", "No, solo la lista.") that opens a short reply to a
    quoted question, or None; a question by the sender, a blocker ("phishing") or a longer text answers nothing."""
    adoption = rules.adoption
    words = [t for t in own.tokens if t[0].isalnum()]
    if not words or "?" in own.at:
        return None
    if adoption.blockers is not None and adoption.blockers.search(own.text) is not None:
        return None
    first = " ".join(clause(own.tokens, frozenset()))
    if len(words) > adoption.answer_max_words:
        return _object_answer(own, first, len(words), quoted, rules, reasons)
    yes = adoption.answers_yes is not None and adoption.answers_yes.fullmatch(first) is not None
    if not yes and (adoption.answers_no is None or adoption.answers_no.fullmatch(first) is None):
        return _object_answer(own, first, len(words), quoted, rules, reasons)
    question = _question_paragraphs(quoted, rules)
    if not question:
        return None
    rest = _sentence(own.tokens[len(first.split()):])
    kept = frozenset() if yes else frozenset(t for t in rest if t[0].isalnum() and len(t) >= _KEPT_MIN)
    reasons.append(f"act {'adoption' if yes else 'refusal'}: '{first}' in body line {own.lines[0]} answers the "
                   f"quoted question in line {question[0].number}"
                   + (f", keeping '{' '.join(t for t in rest if t[0].isalnum())}'" if kept else ""))
    turn = adoption.answers_no_turn
    turned = not yes and turn is not None and turn.search(" ".join(rest)) is not None
    return Answer(first, yes, question, kept, turned)


def _object_answer(own: Canon, first: str, count: int, quoted: Sequence[Line], rules: Rules,
                   reasons: list[str]) -> Answer | None:
    """An answer that only names the thing a quoted question asks for ("Quella di m.bianchi." to "quale casella va
    sbloccata?", "Per l'Ufficio Tirocini." to "per quale ufficio va creata la casella?"): like a yes, it adopts the
    action the question names, which the answer itself never says (fail closed). Only under a question asking which
    one, and only a first clause that names a thing and nothing else; what follows it is read as the sender's own."""
    adoption = rules.adoption
    if (adoption.answers_object is None or adoption.answers_object_to is None
            or count > adoption.answer_object_max_words or len(first.split()) > _OBJECT_CLAUSE_MAX
            or adoption.answers_object.match(first) is None
            or (adoption.answers_object_not is not None and adoption.answers_object_not.search(first) is not None)):
        return None
    question = _question_paragraphs(quoted, rules)
    if not question or adoption.answers_object_to.search(canon(question, rules).text) is None:
        return None
    reasons.append(f"act adoption: '{first}' in body line {own.lines[0]} names the object the quoted question in "
                   f"line {question[0].number} asks for")
    return Answer(first, True, question, frozenset())


def inline_answers(own: Sequence[Line], quoted: Sequence[Line], rules: Rules, reasons: list[str]) -> tuple[Answer, ...]:
    """Bare answers typed under each quoted question in turn ("> 1. Va cancellata?" / "no" / "> 2. ...?" / "sì"):
    each answers the quoted block right above it, blank lines between them or not; fewer than two such answers
    leave the reply to ``answer``."""
    blocks: dict[int, Sequence[Line]] = {}  # each run of consecutive quoted lines, by its last line's number
    start = 0
    for i, ln in enumerate(quoted):
        if i + 1 == len(quoted) or quoted[i + 1].number != ln.number + 1:
            blocks[ln.number] = quoted[start:i + 1]
            start = i + 1
    notes: list[str] = []
    found: list[Answer] = []
    blank = {ln.number for ln in own if not ln.folded.strip()}
    for ln in own:
        above = ln.number - 1
        while above in blank:  # blank lines between a quoted question and the answer typed under it
            above -= 1
        block = blocks.get(above)  # an own line right below a quote ends that quote's run
        if block is not None and ln.folded.strip():
            one = answer(canon((ln,), rules), block, rules, notes)
            found.extend(() if one is None else (one,))
    if len(found) < _INLINE_MIN:
        return ()
    reasons.extend(notes)
    return tuple(found)


_INLINE_MIN = 2
"""Answers under two questions at least: one bare answer under one quote is ``answer``'s."""

_KEPT_MIN = 4
"""The shortest word a no keeps ("lista", "alias"): articles and prepositions name nothing."""

_OBJECT_CLAUSE_MAX = 6
"""The longest first clause read as naming the quoted question's object ("quella di m bianchi", "per l ufficio
tirocini", "il 347 123 4567"): a longer one says something of its own."""


def _sentence(tokens: Sequence[str]) -> list[str]:
    """The words up to the end of the first sentence (commas do not end it)."""
    out: list[str] = []
    for token in tokens:
        if token in SENTENCE_END:
            break
        out.append(token)
    return out


def _question_paragraphs(quoted: Sequence[Line], rules: Rules) -> tuple[Line, ...]:
    """The quoted paragraphs that hold a "?", or ask a confirmation without one ("La casella sara chiusa venerdi. Ci
    dia conferma."): the question a bare answer answers, with what it explains."""
    confirm = rules.adoption.answers_confirm
    out: list[Line] = []
    paragraph: list[Line] = []
    for ln in (*quoted, Line(0, "", "")):
        if ln.folded.strip():
            paragraph.append(ln)
            continue
        if paragraph and (any("?" in p.folded for p in paragraph)
                          or (confirm is not None and confirm.search(canon(paragraph, rules).text) is not None)):
            out.extend(paragraph)
        paragraph = []
    return tuple(out)


def answered(hits: list[Hit], answer: Answer, canon: Canon, reasons: list[str], threshold: int) -> list[Hit]:
    """A yes asks for what the quoted question names, even what it asks about ("ci conferma la sospensione?");
    a no declines it, but for a frame whose sentence holds a word the no keeps ("No, solo la lista")."""
    asked = {ln.number for ln in answer.question}
    # A turn to an action with an object of its own ("no, ma resettate la password di Rossi") is that request alone.
    turned = answer.turned and not any(hit.line not in asked and hit.cue is None and hit.act == "request"
                                       and hit.rule.category.privileged and hit.rule.weight >= threshold
                                       for hit in hits)
    out = []
    for hit in hits:
        if answer.yes and hit.line in asked and hit.act == "report" and _asked_in_sentence(canon, hit):
            # The desk's own action asked about ("Which mailbox should we delete?") is read as a report of its
            # doing; a yes to that very sentence asks for it (fail closed).
            out.append(_reread_by_answer(replace(hit, cue=None, act="request"), reasons,
                                         f"asked by the answer: '{answer.said}' to the question '{hit.snippet}'"))
            continue
        if hit.line not in asked or hit.act not in ("request", "question") or (hit.cue is None) is answer.yes:
            out.append(hit)
        elif turned and hit.rule.category.privileged:
            out.append(_reread_by_answer(replace(hit, cue=None, act="request"), reasons,
                                         f"kept asked by the answer's turn to an action of its own: '{answer.said}'"))
        elif answer.yes:
            out.append(_reread_by_answer(replace(hit, cue=None, act="request"), reasons,
                                         f"asked by the answer: '{answer.said}' to '{hit.cue} ... {hit.snippet}'"))
        elif answer.kept & _sentence_words(canon, hit):
            out.append(hit)
        else:
            out.append(_reread_by_answer(replace(hit, cue=answer.said, act="negation"), reasons,
                                         f"declined by the answer: '{answer.said} ... {hit.snippet}'"))
    return out


def _asked_in_sentence(canon: Canon, hit: Hit) -> bool:
    """True when the sentence of a hit's action ends with a "?": the hit is what the question asks about."""
    for token in canon.tokens[hit.token:]:
        if token in SENTENCE_END:
            return token == "?"
    return False


def _reread_by_answer(hit: Hit, reasons: list[str], note: str) -> Hit:
    """The hit as the answer reads it, its reason given once (several rules may match the same words)."""
    if (line := f"{note} in {where(hit)} ({hit.rule.id})") not in reasons:
        reasons.append(line)
    return hit


def _sentence_words(canon: Canon, hit: Hit) -> set[str]:
    """The words of a hit's match in the sentence of its action: a frame linked across a sentence keeps only
    its own sentence's words."""
    words = set()
    for step in (-1, 1):
        i = hit.token
        while i in hit.span and canon.tokens[i] not in SENTENCE_END:
            words.add(canon.tokens[i])
            i += step
    return words


def _limited_to(own: Canon, match: re.Match[str], rules: Rules) -> Hit | None:
    """The sender's own frame an adoption phrase is limited to ("procedete solo con l'inserimento di X nella
    lista"), or None; a limit that names no frame ("procedete solo con la pratica") still adopts (fail closed)."""
    limits = rules.adoption.limits
    if limits is None or match.end() >= len(own.text):
        return None
    found = limits.match(own.text, match.end() + 1)
    if found is None:
        return None
    first = own.token_after(found.end())
    return next((hit for hit in hits(own, "body", rules) if hit.cue is None and not hit.rule.mention
                 and first <= hit.span.start <= first + _LIMIT_REACH), None)
