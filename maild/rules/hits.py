"""Where each rule's templates match a zone, and whether the sender asks for the action each match names."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from maild.rules.canonical import PARAGRAPH, SENTENCE_END, Canon, is_boundary
from maild.rules.loader import Acts, Negation, Rule, Rules
from maild.rules.patterns import Template

SNIPPET = 60
_EDGE = 4
"""Words before a cue window read for an exception that ends inside it."""


@dataclass(frozen=True, slots=True)
class Hit:
    rule: Rule
    zone: str
    token: int
    line: int
    snippet: str
    cue: str | None
    act: str
    """"request" when the action counts; else what the sender does with it (question, withdrawal...)."""
    reread: tuple[str, ...] = ()
    """The sender's words in the match that the tolerance read as another ("cancillatila")."""
    span: range = range(0)
    """The tokens the match covers: the words this frame has read."""


_NOT_WORD = re.compile(r"[^a-z0-9 ]")
"""A clause boundary in canonical text: every other token is letters and digits."""


def hits(canon: Canon, zone: str, rules: Rules, declared: str | None = None) -> list[Hit]:
    found: list[Hit] = []
    nets: list[tuple[Rule, Template]] = []
    for position in rules.index.candidates(canon.words):
        rule, template = rules.templates[position]
        if zone not in rule.zones:
            continue
        if rule.net:
            nets.append((rule, template))
            continue
        for match in template.matches(canon.text, canon.words, canon.at):
            if rule.clause_start and not _starts_clause(canon, canon.token_at(match.start())):
                continue
            found.extend(_hit_and_inner(canon, zone, rule, template, match, rules, declared))
    if any(hit.rule.pronoun for hit in found):
        found = _pronouns_taken_up(found)
    if nets and not any(hit.cue is None and hit.rule.category.privileged and not hit.rule.mention
                        and hit.rule.weight >= rules.threshold for hit in found):
        found.extend(_net_hits(canon, zone, nets, found, rules, declared))
    return found


def _pronouns_taken_up(found: list[Hit]) -> list[Hit]:
    """Drop a bare pronoun's hit where a frame of another category read it with the object named before it."""
    taken = {(hit.token, hit.rule.category) for hit in found
             if hit.cue is None and not hit.rule.pronoun and not hit.rule.mention and hit.span
             and hit.span.start < hit.token}
    return [hit for hit in found if not (hit.rule.pronoun and hit.cue is None and any(
        token == hit.token and category != hit.rule.category for token, category in taken))]


def _hit_and_inner(canon: Canon, zone: str, rule: Rule, template: Template, match: re.Match[str], rules: Rules,
                   declared: str | None) -> list[Hit]:
    """The match's hit and, when its action is not asked for, the hits of matches starting inside it.

    "la casella NON va cancellata, chiedo solo di togliere dalla lista X": the match from the negated
    "cancellata" to "lista" must not hide the request that starts at "togliere".
    """
    hit = _hit(canon, zone, rule, match, rules, declared)
    out = [hit]
    while hit.cue is not None:
        inner = template.first_match_within(canon.text, canon.words, canon.at, match.start(), match.end())
        if inner is None:
            break
        match = inner
        if rule.clause_start and not _starts_clause(canon, canon.token_at(match.start())):
            break
        hit = _hit(canon, zone, rule, match, rules, declared)
        out.append(hit)
    return out


def _net_hits(canon: Canon, zone: str, nets: list[tuple[Rule, Template]], hits: list[Hit], rules: Rules,
              declared: str | None) -> list[Hit]:
    """The net's hits on actions no other rule read; run only when no privileged frame already decides."""
    read = {token for hit in hits if not hit.rule.mention for token in hit.span}
    found = [_hit(canon, zone, rule, match, rules, declared) for rule, template in nets
             for match in template.matches(canon.text, canon.words, canon.at)]
    return [hit for hit in found if hit.token not in read]


def _starts_clause(canon: Canon, token: int) -> bool:
    return token == 0 or is_boundary(canon.tokens[token - 1])


def _hit(canon: Canon, zone: str, rule: Rule, match: re.Match[str], rules: Rules, declared: str | None) -> Hit:
    has_action = "act" in match.re.groupindex and match.start("act") >= 0
    token = canon.token_at(match.start("act") if has_action else match.start())
    found = None
    if rule.negatable:
        found = _not_requested(canon, token, canon.token_after(match.end()), rules, declared, rule, zone)
        first = canon.token_at(match.start())
        # The object first, a cue before it: "nel caso in cui l'account venga bloccato".
        if found is None and first < token and not _NOT_WORD.search(canon.text, canon.starts[first],
                                                                     canon.starts[token]):
            found = negated(canon, first, canon.token_after(match.end()), rules.negation, rule)
    else:  # a topic no "non" denies, yet one a message that asks for nothing, or a cue naming the rule, tells about
        found = negated(canon, token, token, rules.negation, rule, named_only=True) or _reported(
            canon, token, rules, declared, zone, rule)
    snippet = match.group()
    if len(snippet) > SNIPPET:
        snippet = snippet[:SNIPPET] + "..."
    if found is None and rule.net:
        found = _net_not_requested(canon, token, rules)
    act, cue = found if found is not None else ("request", None)
    reread: tuple[str, ...] = ()
    span = range(canon.token_at(match.start()), canon.token_at(match.end() - 1) + 1)
    if canon.reread:
        reread = tuple(f"'{canon.reread[i]}' as '{canon.tokens[i]}'" for i in span if i in canon.reread)
    return Hit(rule, zone, token, canon.lines[token], snippet, cue, act, reread, span)


def _not_requested(canon: Canon, action: int, after: int, rules: Rules, declared: str | None,
                   rule: Rule, zone: str) -> tuple[str, str] | None:
    """(act, cue) when the action at token ``action`` is not asked for: negated, withdrawn, reported,
    or only asked about; None when it is requested."""
    found = negated(canon, action, after, rules.negation, rule)
    if found is not None:
        return found
    if "?" in canon.at:
        question = _question(canon, action, rules.acts)
        if question is not None:
            return "question", question
    retracted = _retracted(canon, after, rules.acts)
    if retracted is not None:
        return "withdrawal", retracted
    reserved = _reserved(canon, action, rules)
    if reserved is not None:
        return "report", reserved
    return _reported(canon, action, rules, declared, zone, rule)


_RESERVATION_REACH = 40
"""How far back in its sentence a reservation governs an action ("con riserva di chiedere, tramite il referente e
all'esito del riordino, la soppressione della casella e la creazione di...")."""


def _reserved(canon: Canon, action: int, rules: Rules) -> str | None:
    """The reservation earlier in the action's sentence that keeps the request for later ("ci riserviamo, all'esito
    della verifica, di chiedere il reset e il blocco"), or None: an action not named by article and noun, or a
    request cue, a turn, a need or a verb of its own between them, asks now ("..., intanto bloccatela")."""
    kept = rules.acts.reservation
    if kept is None or action == 0 or kept.named.match(canon.text, canon.starts[action - 1]) is None:
        return None  # an action commanded ("resettate", "la chiudete", "va cancellata") is asked now
    text = _sentence_before(canon, action)
    last = max(kept.phrases.finditer(text), key=lambda found: found.end(), default=None)
    if last is None:
        return None
    rest = text[last.end():]
    if rules.acts.request_cues.search(rest) is not None or not rules.negation.terminators.isdisjoint(rest.split()) \
            or kept.stops.search(rest) is not None or kept.verb.search(rest) is not None:
        return None
    return last.group()


def _sentence_before(canon: Canon, action: int) -> str:
    """The words of the action's sentence before it (up to a ";"), at most ``_RESERVATION_REACH``."""
    start = action
    while start > max(0, action - _RESERVATION_REACH) and canon.tokens[start - 1] not in SENTENCE_END \
            and canon.tokens[start - 1] != ";":
        start -= 1
    return " ".join(canon.tokens[start:action])


_RETRACTION_WORDS = 7
"""The longest retraction read at the start of the next clause ("don't do this with my mailbox")."""


def _retracted(canon: Canon, after: int, acts: Acts) -> str | None:
    """The retraction that opens one of the clauses right after the action's ("Could you reset it? - actually
    no, ignore that", "chiudete la lista, no, lasciate stare"), or None: the sender takes the action back at once.
    A short clause between ("actually no", "anzi no") may lead to it; alone it may correct a value, not the action."""
    if acts.retractions is None:
        return None
    end = after
    for _ in range(_RETRACTION_CLAUSES):
        while end < len(canon.tokens) and canon.tokens[end][0].isalnum():
            end += 1
        if end + 1 >= len(canon.tokens) or canon.tokens[end] == PARAGRAPH:
            return None
        following = clause(canon.tokens[end + 1:end + 2 + _RETRACTION_WORDS], frozenset())
        found = acts.retractions.match(" ".join(following))
        # Whole: it ends its clause ("never mind, I found it"), it does not go on ("never mind the delay").
        if found is not None and len(found.group().split()) == len(following):
            return found.group()
        if len(following) > _LEAD_IN_WORDS or (following and following[0] in acts.retraction_conditions):
            return None  # a longer clause, or a condition: "resettatela. Se entra, lasciate stare" is an if/else
        end += 1
    return None


_OBLIGATION_WORDS = 3
"""How far an obligation reaches back to its action: "va chiusa", "deve essere chiusa", "must be closed"."""
_RETRACTION_CLAUSES = 2
_LEAD_IN_WORDS = 2
"""The longest clause read past on the way to a retraction ("actually no", "anzi no", "oh wait")."""


def _reported(canon: Canon, action: int, rules: Rules, declared: str | None, zone: str,
              rule: Rule | None = None) -> tuple[str, str] | None:
    """("report", cue) when the message says it asks for nothing and no request cue stands in the clause, nor
    does the action open a clause of the body as a command ("... nessuna azione sulla lista. Resettate la
    password": fail closed), nor is a privileged one owed ("la casella di Rossi va chiusa"); a subject opening
    with its topic ("Sospensione della casella") commands nothing."""
    if declared is None:
        return None
    back = clause(canon.tokens[max(0, action - rules.negation.reach):action][::-1], rules.negation.terminators)
    if rules.acts.request_cues.search(" ".join(reversed(back))) is not None:
        return None
    if rule is not None and rule.category.privileged and (
            any(word in rules.acts.obligation_lead for word in back[:_OBLIGATION_WORDS])
            or not rules.acts.need_lead.isdisjoint(back)):
        return None
    if zone == "body" and all(word in rules.acts.command_lead for word in back) and not (
            rule is not None and rule.mention and not rule.category.privileged):  # a topic named commands nothing
        return None
    if zone == "body" and rule is not None and rule.category.privileged and _clitic_command(canon, action, back, rules):
        return None
    return "report", declared


def _clitic_command(canon: Canon, action: int, back: Sequence[str], rules: Rules) -> bool:
    """A privileged action given as a command on a clitic ("... invece la chiudete oggi") or owed past a turn
    ("serve invece la chiusura"): asked, whatever the message says of itself (fail closed)."""
    if back and back[0] in rules.acts.clitics and all(w in rules.acts.command_lead for w in back[1:]) \
            and canon.tokens[action].endswith(rules.acts.command_endings):
        return True
    wide = clause(canon.tokens[max(0, action - _OBLIGATION_WORDS):action][::-1], frozenset())
    return any(word in rules.acts.obligation_lead for word in wide)


def _net_not_requested(canon: Canon, action: int, rules: Rules) -> tuple[str, str] | None:
    """The net reads no yes/no question ("vengono chiuse automaticamente?") and no inability ("non posso
    cancellare niente") as a request: what it catches, no frame explains."""
    question = _question(canon, action, rules.acts, any_question=True)
    if question is not None:
        return "question", question
    back = clause(canon.tokens[max(0, action - rules.negation.reach):action][::-1], rules.negation.terminators)
    unable = None if rules.negation.exceptions is None else rules.negation.exceptions.search(" ".join(reversed(back)))
    return None if unable is None else ("negation", unable.group())


def _question(canon: Canon, action: int, acts: Acts, *, any_question: bool = False) -> str | None:
    """The opener of the information question the action's sentence asks (with ``any_question``, "?" for a
    yes/no question too), or None."""
    end = action
    while end < len(canon.tokens) and canon.tokens[end] not in SENTENCE_END:
        end += 1
    if end == len(canon.tokens) or canon.tokens[end] != "?":
        return None
    start = action
    while start > 0 and canon.tokens[start - 1] not in SENTENCE_END:
        start -= 1
    if acts.request_cues.search(" ".join(canon.tokens[start:end])) is not None:
        return None
    for at in range(action - 1, start - 1, -1):  # only the action's own clause: "c'è un errore quindi me la sbloccate?"
        if canon.tokens[at] in acts.question_breaks:
            start = at + 1
            break
    opener = acts.question_openers.search(" ".join(canon.tokens[start:action]))
    if opener is None:
        return "?" if any_question else None
    return opener.group()


def negated(canon: Canon, action: int, after: int, negation: Negation,
            rule: Rule | None = None, *, named_only: bool = False) -> tuple[str, str] | None:
    """(act, cue) of the cue that cancels the action of ``rule`` at token ``action``, or None; with
    ``named_only`` (a rule no "non" denies), only the groups that name the rule, and no verdict after it.

    Each group looks back over its own window; every window is a prefix of
    the widest one read backwards, so that clause is cut once, and a window
    shared by several groups is joined and cleared of exceptions once.
    """
    back = clause(canon.tokens[max(0, action - negation.reach):action][::-1], negation.terminators)
    possible = negation.may_cancel(back)  # the groups whose cues can start at a word of the window
    windows: dict[int, str] = {}
    while possible:
        lowest = possible & -possible
        possible ^= lowest
        group = negation.cues[lowest.bit_length() - 1]
        if (group.categories or group.rules) and (
                rule is None or (group.categories and rule.category not in group.categories)
                or (group.rules and rule.id not in group.rules)):
            continue
        if named_only and (rule is None or rule.id not in group.rules):
            continue
        if group.spares and canon.tokens[action] in group.spares:
            continue
        before = back[:group.window]
        if group.stops:
            before = clause(before, group.stops)
        if not before:
            continue  # every cue needs at least one word
        window = windows.get(len(before))
        if window is None:
            window = _cleared(back, len(before), negation.exceptions)
            windows[len(before)] = window
        cue = group.pattern.search(window)
        if cue is not None:
            return group.act, cue.group()
    if negation.post is None or named_only:
        return None
    if after < len(canon.tokens) and canon.tokens[after] == ":":
        after += 1  # a label and its verdict: "reset password: NON serve piu"
    following = clause(canon.tokens[after:after + negation.post_window], negation.post_stops or negation.terminators)
    relative = next((i for i, word in enumerate(following[:_RELATIVE_OPENS]) if word in negation.relatives), None)
    if relative is not None:
        following = clause(canon.tokens[after:after + negation.relative_window],
                           negation.terminators | negation.relative_stops)[relative + _RELATIVE_OWN:]
    if not negation.may_follow(following):
        return None
    post = negation.post.search(" ".join(following))
    return None if post is None else ("negation", post.group())


_RELATIVE_OPENS = 5
"""Where a relative clause after an action's object may open: "che", "di cui"."""
_RELATIVE_OWN = 3
"""The pronoun and the two words after it: a verdict there is the relative clause's own, about the object ("la
casella che non serve piu", "the mailbox which is no longer needed"), not about the action."""


def _cleared(back: Sequence[str], size: int, exceptions: re.Pattern[str] | None) -> str:
    """The last ``size`` words before an action (``back`` reads backwards), cleared of exceptions, also of one
    the window's edge cuts ("grateful | if ...", "appreciate it | if ...")."""
    window = " ".join(reversed(back[:size]))
    if exceptions is None:
        return window
    wider = " ".join(reversed(back[:size + _EDGE]))
    edge = len(wider) - len(window)
    out, last = [], edge
    for match in exceptions.finditer(wider):
        if match.end() <= edge:
            continue
        out.append(wider[last:max(match.start(), edge)])
        out.append(" ")
        last = match.end()
    out.append(wider[last:])
    return "".join(out)


def clause(tokens: Sequence[str], terminators: frozenset[str]) -> list[str]:
    """The leading run of ``tokens`` up to a clause boundary or terminator word."""
    out: list[str] = []
    for token in tokens:
        if not token[0].isalnum() or token in terminators:  # is_boundary, inlined: every window reads here
            break
        out.append(token)
    return out


def where(hit: Hit) -> str:
    if hit.zone == "subject and body":
        return f"the subject read on into body line {hit.line}"
    return f"body line {hit.line}" if hit.zone == "body" else hit.zone
