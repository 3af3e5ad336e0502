"""The zones read like a subject: the subject, the adopted message's subject, file names, the subject read on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from maild.rules.canonical import canon
from maild.rules.hits import SNIPPET, Hit, hits
from maild.rules.loader import Rules
from maild.rules.textclean import Line, fold


def subject_hits(subject: str, adopted: bool, rules: Rules, reasons: list[str],
                 declared: str | None = None) -> list[Hit]:
    folded = fold(subject, rules.cleaning.symbols)
    if not folded.strip():
        return []
    if rules.reply_prefix.match(folded) and not adopted:
        reasons.append("subject not used: a reply/forward subject is quoted context")
        return []
    stripped = rules.subject_strip.sub("", folded)
    found = hits(canon((Line(0, stripped, stripped),), rules), "subject", rules, declared)
    label = None if rules.acts.subject_question is None else rules.acts.subject_question.search(stripped)
    if label is not None and rules.acts.request_cues.search(stripped) is None:
        # Labelled a question: a privileged frame still counts (fail closed), nothing else is asked for.
        return [replace(hit, cue=label.group().strip(), act="question")
                if hit.cue is None and (hit.rule.mention or not hit.rule.category.privileged) else hit
                for hit in found]
    if not stripped.rstrip().endswith("?") or rules.acts.request_cues.search(stripped) is not None:
        return found
    # A subject that is a question names the topic asked about ("Quota massima caselle PEC?"); a frame in
    # it still counts (fail closed), a bare topic does not.
    return [replace(hit, cue="?", act="question") if hit.rule.mention and hit.cue is None else hit
            for hit in found]


def quoted_subject_hits(quoted_subject: str, rules: Rules, reasons: list[str], declared: str | None) -> list[Hit]:
    """The adopted message's own subject is part of its request: read like a subject, after the body."""
    hits = subject_hits(quoted_subject, True, rules, reasons, declared)
    if hits:
        reasons.append(f"adopted message's subject read: '{quoted_subject[:SNIPPET]}'")
    return hits


_FILE_NAME_GLUE = re.compile(r"[_.+-]+")
_FILE_EXTENSION = re.compile(r"\.[a-z0-9]{1,5}$", re.IGNORECASE)


def attachment_name_hits(names: Sequence[str], rules: Rules, declared: str | None) -> list[Hit]:
    """What the attachments' file names ask ("richiesta_reset_password_PEC.pdf"), read like a subject: a short
    body points to them. Only the names: no attachment's content is read."""
    out: list[Hit] = []
    for name in names:
        words = fold(_FILE_NAME_GLUE.sub(" ", _FILE_EXTENSION.sub("", name)))
        for hit in hits(canon((Line(0, words, words),), rules), "subject", rules, declared):
            out.append(replace(hit, zone=f"the attachment's file name '{name[:SNIPPET]}'"))
    return out


_ELLIPTIC_WORDS = 4
"""The longest opening clause of the body read as an action whose object is the subject."""
_CLAUSE_END = re.compile(r"[.;:!?\u2026]")
_EDGE_PUNCT = re.compile(r"^[\s.,;:\u2026-]+|[\s.,;:\u2026-]+$")


def lead_hits(subject: str, own: Sequence[Line], rules: Rules) -> tuple[Hit, ...]:
    """Frames that run from the subject into the body's opening clause, either way round: "Add me please" /
    "...to the tutors list"; "Casella di Anna Ricci" / "da sospendere: e in aspettativa". Only a frame that
    takes words from both counts, and only when neither alone reaches the threshold (see ``_decide``)."""
    title = _EDGE_PUNCT.sub("", rules.subject_strip.sub("", fold(subject, rules.cleaning.symbols)))
    first = next((ln for ln in own if ln.folded.strip()), None)
    if not title or first is None:
        return ()
    opening = _EDGE_PUNCT.sub("", first.folded)
    clause = _EDGE_PUNCT.sub("", _CLAUSE_END.split(opening, maxsplit=1)[0])
    readings = [(Line(0, title, title), Line(first.number, opening, opening))]
    if len(clause.split()) <= _ELLIPTIC_WORDS:  # "da sospendere", "to be deleted": an action without its object
        readings.append((Line(first.number, clause, clause), Line(0, title, title)))
    out: list[Hit] = []
    for lines in readings:
        joined = canon(lines, rules)
        for hit in hits(joined, "body", rules):
            if (hit.cue is None and not hit.rule.mention and not hit.rule.net
                    and len({joined.lines[i] for i in hit.span}) == 2):
                out.append(replace(hit, zone="subject and body", line=first.number))
    return tuple(out)
