"""What a message's own marks say of its hits: states told, form boxes, stale fields, items done, tool faults."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from maild.records import Category
from maild.rules.canonical import tokens
from maild.rules.hits import Hit, where
from maild.rules.loader import PAST_REQUESTS, Acts, Rules
from maild.rules.textclean import Line


def asked_states(hits: list[Hit], declared: re.Match[str] | None, reasons: list[str]) -> list[Hit]:
    """A state told in a message that says it asks for nothing is still asked for when an action of its
    category is ("per conoscenza, l'account si e bloccato: potete sbloccarlo?"): fail closed."""
    if declared is None:
        return hits
    asked = {hit.rule.category for hit in hits if hit.act == "request" and not hit.rule.mention}
    out = []
    for hit in hits:
        if hit.rule.state and hit.act == "report" and hit.cue == declared.group() and hit.rule.category in asked:
            reasons.append(f"state asked for: '{hit.snippet}' in {where(hit)} ({hit.rule.id}): an action of "
                           f"its category is asked, whatever '{declared.group()}' says")
            out.append(replace(hit, cue=None, act="request"))
        else:
            out.append(hit)
    return out


def declined_states(hits: list[Hit], reasons: list[str], verdict: re.Pattern[str] | None = None) -> list[Hit]:
    """A state told ("l'account si e bloccato") or a topic named ("la password e giusta") is no request when
    the sender declines the action on it ("non si tratta di resettarla", "il reset non serve piu").

    Only when every requested frame of that category is a state: an action
    asked for elsewhere in the message keeps the category. The action named
    bare declines only when withdrawn ("nessun reset") or by a ``verdict`` after it: "non so fare il reset" does not.
    """
    declined = {hit.rule.category: hit for hit in hits
                if hit.act in ("negation", "withdrawal") and not hit.rule.state and _declines(hit, verdict)}
    if not declined:
        return hits
    requested: dict[Category, list[Hit]] = {}
    for hit in hits:
        if hit.cue is None and not hit.rule.mention:
            requested.setdefault(hit.rule.category, []).append(hit)
    out = []
    for hit in hits:
        told = declined.get(hit.rule.category)
        if told is not None and hit.cue is None and (hit.rule.state or hit.rule.mention) and all(
                h.rule.state for h in requested.get(hit.rule.category, ())):
            reasons.append(f"{'topic named' if hit.rule.mention else 'state told'}, not asked for: '{hit.snippet}' "
                           f"in {where(hit)} ({hit.rule.id}): "
                           f"the sender declines '{told.cue} ... {told.snippet}'")
            out.append(replace(hit, cue=told.cue, act="report"))
        else:
            out.append(hit)
    return out


def _declines(hit: Hit, verdict: re.Pattern[str] | None) -> bool:
    """A frame declined declines its action; a mention only when it names the action and is withdrawn ("nessun
    reset") or a verdict follows it."""
    if not hit.rule.mention:
        return True
    if hit.rule.names_action and hit.act == "withdrawal":
        return True
    return hit.rule.names_action and verdict is not None and hit.cue is not None and \
        verdict.fullmatch(hit.cue) is not None


@dataclass(frozen=True, slots=True)
class _Boxes:
    """The lines of a tick-box form: boxes ticked and left empty, by line number, with the box as written."""

    ticked: Mapping[int, str]
    unticked: Mapping[int, str]


_NO_FORM = _Boxes(MappingProxyType({}), MappingProxyType({}))


def form_boxes(lines: Sequence[Line], acts: Acts) -> _Boxes:
    """The boxes of a form: only when the sender's text ticks one box and leaves another empty; a list of empty
    boxes alone ("[ ] reset della password") may be a list of things to do (fail closed), and so are the empty
    boxes of a checklist ("checklist", "le voci aperte sono per voi", "<-- a voi")."""
    if acts.ticked_box is None or acts.unticked_box is None:
        return _NO_FORM
    ticked, unticked = {}, {}
    for ln in lines:
        if (found := acts.ticked_box.match(ln.folded)) is not None:
            ticked[ln.number] = found.group().strip()
        elif (found := acts.unticked_box.match(ln.folded)) is not None:
            unticked[ln.number] = found.group().strip()
    if not ticked or not unticked:
        return _NO_FORM
    if acts.open_items is not None and any(acts.open_items.search(ln.folded) for ln in lines):
        return _Boxes(MappingProxyType(ticked), MappingProxyType({}))
    return _Boxes(MappingProxyType(ticked), MappingProxyType(unticked))


def unticked(hits: list[Hit], boxes: _Boxes, reasons: list[str]) -> list[Hit]:
    """An action on a form's box left empty ("[ ] Reimpostazione password") is not chosen, so not asked for."""
    return told_on(hits, boxes.unticked, "box left empty", reasons) if boxes.unticked else hits


def ticked(hits: list[Hit], boxes: _Boxes, threshold: int, reasons: list[str]) -> list[Hit]:
    """A form's ticked box chooses what it names: a privileged object named there ("[X] Guest email account") is
    asked for, though the line has no verb (fail closed)."""
    out = []
    for hit in hits:
        mark = boxes.ticked.get(hit.line) if hit.zone == "body" and hit.cue is None else None
        if mark is None or not hit.rule.mention or not hit.rule.category.privileged:
            out.append(hit)
            continue
        reasons.append(f"box ticked: '{hit.snippet}' in {where(hit)} ({hit.rule.id}) on '{mark}' is chosen")
        out.append(replace(hit, rule=replace(hit.rule, mention=False, weight=max(hit.rule.weight, threshold))))
    return out


_ITEM_LEAD = re.compile(r"(?P<indent>[ \t]*)(?P<mark>[-*+\u2022]|\d{1,3}[.)]|[a-z][.)]|[a-z]{1,3}[+-]\d{1,3}\b)?")


def _item_shape(line: Line) -> tuple[int, str] | None:
    """A list item's lead (indent and kind of marker), or None when the line is no item."""
    lead = _ITEM_LEAD.match(line.folded)
    mark = None if lead is None else lead.group("mark")
    if lead is None or mark is None:
        return None
    kind = "word" if mark[:1].isalpha() else "number" if mark[:1].isdigit() else mark
    return len(lead.group("indent").expandtabs(4)), kind


def sibling_items(number: int, lines: Sequence[Line]) -> frozenset[int]:
    """The line numbers of the other items of the list body line ``number`` is an item of (same indent and kind
    of marker, with their deeper continuation lines): what an item says ("T-1 nessuna azione") holds for it alone."""
    at = next((i for i, ln in enumerate(lines) if ln.number == number), None)
    shape = None if at is None else _item_shape(lines[at])
    if at is None or shape is None:
        return frozenset()
    found: set[int] = set()
    for step in (-1, 1):
        i = at + step
        while 0 <= i < len(lines) and lines[i].folded.strip():
            ln = lines[i]
            if _indent(ln) > shape[0] or _item_shape(ln) == shape:
                found.add(ln.number)
            else:
                break
            i += step
    return frozenset(found) if any(_item_shape(ln) == shape for ln in lines if ln.number in found) else frozenset()


def _indent(line: Line) -> int:
    return len(line.folded.expandtabs(4)) - len(line.folded.expandtabs(4).lstrip())


def told_beside_item(hits: list[Hit], items: frozenset[int], declared: str | None, reasons: list[str]) -> list[Hit]:
    """A hit read as told only because the message says it asks for nothing, where that phrase stands on one item
    of a list and the hit on another: the phrase was that item's, so the hit asks (fail closed)."""
    out = []
    for hit in hits:
        if hit.line not in items or hit.act != "report" or hit.cue != declared or hit.rule.net:
            out.append(hit)
            continue
        why = f"'{declared}' stands on another item of the list: '{hit.snippet}' in {where(hit)} is read on its own " \
              f"({hit.rule.id})"
        reasons.extend([] if why in reasons else [why])
        out.append(replace(hit, act="request", cue=None))
    return out


def renewed(hits: list[Hit], own: Sequence[Line], rules: Rules, reasons: list[str]) -> list[Hit]:
    """A privileged request told as asked before, by the sender or by someone else ("vi avevo chiesto la chiusura
    …", "un collega vi ha chiesto di chiudere …"), in a message that goes ahead or says it is not done yet
    ("procedete pure", "non è ancora stata fatta"): it is asked again, now by the sender (fail closed)."""
    renewal = rules.acts.renewal
    if renewal is None or not any(h.act == "report" and h.cue and h.rule.category.privileged for h in hits):
        return hits
    pasts = [g.pattern for g in rules.negation.cues if g.name in PAST_REQUESTS]
    sign = renewal.search(" ".join(" ".join(ln.folded for ln in own).split()))
    if sign is None:
        return hits
    out = []
    for hit in hits:
        if (hit.act == "report" and hit.cue and hit.rule.category.privileged
                and any(past.search(hit.cue) for past in pasts)):
            reasons.append(f"asked again: '{hit.cue}' told a request made before, and '{sign.group().strip()}' "
                           f"goes ahead with it: '{hit.snippet}' in {where(hit)} ({hit.rule.id})")
            out.append(replace(hit, act="request", cue=None))
        else:
            out.append(hit)
    return out


_FIELD_LINE = re.compile(r"^\s*([^:\n]{1,40}?)\s*:")


def stale_fields(own: Sequence[Line], lines: Sequence[Line], acts: Acts) -> Mapping[int, str]:
    """The field lines of a reused form whose fields the sender disowns by name, by line number, with the name."""
    if acts.stale_fields is None:
        return {}
    names = {name.strip() for found in acts.stale_fields.finditer(" ".join(" ".join(ln.folded for ln in own).split()))
             for name in re.findall(r'"([^"]+)"', found.group("names"))}
    if not names:
        return {}
    marks = {}
    for ln in lines:
        field = _FIELD_LINE.match(ln.folded)
        if field is not None and field.group(1).strip() in names:
            marks[ln.number] = field.group(1).strip()
    return marks


def told_on(hits: list[Hit], marks: Mapping[int, str], what: str, reasons: list[str]) -> list[Hit]:
    """The body's requested hits on a marked line (by line number, with the mark) read as told, not asked."""
    out = []
    for hit in hits:
        mark = marks.get(hit.line) if hit.cue is None and hit.zone == "body" else None
        if mark is None:
            out.append(hit)
            continue
        reasons.append(f"{what}: '{hit.snippet}' in {where(hit)} ({hit.rule.id}) on '{mark}'")
        out.append(replace(hit, cue=mark, act="report"))
    return out


def done_items(hits: list[Hit], lines: Sequence[Line], rules: Rules, reasons: list[str],
               boxes: _Boxes = _NO_FORM) -> list[Hit]:
    """An action on a list item marked done ("3. disattivazione vecchie caselle ✔") is told, not asked for.

    Unless the item asks in words: "1. backup fatto, potete chiudere la casella" still asks; nor is a form's
    ticked box ("[X] Reimpostazione password") a thing done: it is the thing chosen.
    """
    pattern = rules.acts.done_item
    if pattern is None or not hits:
        return hits
    asked = {hit.line for hit in hits if hit.cue is None and hit.line not in boxes.ticked}
    done = {ln.number: found.group().strip() for ln in lines if ln.number in asked
            for found in (pattern.search(ln.folded),)
            if found is not None and rules.acts.request_cues.search(ln.folded) is None}
    return told_on(hits, done, "item marked done", reasons) if done else hits


def tool_faults(hits: list[Hit], lines: Sequence[Line], rules: Rules, reasons: list[str]) -> list[Hit]:
    """What a line reporting a tool's fault names between the tool and the fault ("il modulo per le variazioni
    di rubrica da errore 500", "the form for alias requests returns an error") is the tool's purpose, not a
    request; a line that asks, and a privileged action, still count (fail closed)."""
    pattern = rules.acts.malfunction
    named = {hit.line for hit in hits if _tool_topic(hit)}
    if pattern is None or not named:
        return hits
    faults = {ln.number: " ".join(tokens(found.group(), rules.abbreviations)) for ln in lines if ln.number in named
              for found in (pattern.search(ln.folded),)
              if found is not None and rules.acts.request_cues.search(ln.folded) is None}
    if not faults:
        return hits
    out = []
    for hit in hits:
        fault = faults.get(hit.line) if _tool_topic(hit) else None
        if fault is None or hit.snippet.removesuffix("...") not in fault:
            out.append(hit)
            continue
        reasons.append(f"tool fault reported: '{hit.snippet}' in {where(hit)} ({hit.rule.id}) on '{fault}'")
        out.append(replace(hit, cue=fault, act="report"))
    return out


def _tool_topic(hit: Hit) -> bool:
    return hit.cue is None and not hit.rule.category.privileged and hit.zone == "body"
