"""The triage pipeline over the held-out set: the same bar as the development corpus.

tests/data/heldout holds messages written apart from the 60 of the development
corpus (new scenarios and wordings, labelled by the same README), so that the
rules are measured on text they were not tuned to first. The bar is the one
of the corpus: at least 97% of decisions and 95% of categories right, zero
privileged requests accepted without authorization, zero ignored messages
answered. No file is special-cased.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections import Counter
from datetime import UTC, datetime
from functools import cache

import pytest

from maild.authorizer import authorize, resolve_administration
from maild.pipeline import Triager
from maild.records import Category, Decision, Disposition
from tests.factories import CORPUS, REPO, settings

HELDOUT = REPO / "tests" / "data" / "heldout"
NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
LABELS: dict[str, dict[str, object]] = json.loads((HELDOUT / "labels.json").read_text())
VALID = {("ignored", "other"), ("rejected", "password_reset"), ("rejected", "lifecycle"),
         *(("accepted", c.value) for c in Category)}


@cache
def results() -> dict[str, Disposition]:
    triager = Triager.from_settings(settings())
    return {name: triager.triage((HELDOUT / name).read_bytes(), now=NOW) for name in sorted(LABELS)}


def _message_id(raw: bytes) -> str:
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
    return str(parsed["Message-ID"]).strip()


def test_heldout_set_is_labelled_large_and_mixed() -> None:
    assert len(LABELS) >= 90
    assert {p.name for p in HELDOUT.glob("*.eml")} == set(LABELS)
    for name, label in LABELS.items():
        assert (label["decision"], label["category"]) in VALID, name
        assert isinstance(label["note"], str) and label["note"], name
    decisions = Counter(str(label["decision"]) for label in LABELS.values())
    categories = Counter(str(label["category"]) for label in LABELS.values())
    assert set(decisions) == {"accepted", "rejected", "ignored"}
    assert min(categories[c.value] for c in Category) >= len(LABELS) // 10


def test_heldout_messages_are_not_copies_of_the_corpus() -> None:
    corpus = {_message_id(p.read_bytes()) for p in CORPUS.glob("*.eml")}
    heldout = [_message_id((HELDOUT / name).read_bytes()) for name in sorted(LABELS)]
    assert len(set(heldout)) == len(heldout)
    assert not corpus & set(heldout)


def test_decisions_and_categories_meet_the_bar() -> None:
    got = results()
    wrong_decision = [n for n, d in got.items() if d.decision.value != LABELS[n]["decision"]]
    wrong_category = [n for n, d in got.items() if d.category.value != LABELS[n]["category"]]
    report = {n: (got[n].decision.value, got[n].category.value, LABELS[n]) for n in {*wrong_decision, *wrong_category}}
    assert len(wrong_decision) / len(got) <= 0.03, report
    assert len(wrong_category) / len(got) <= 0.05, report


def test_no_privileged_request_is_accepted_without_authorization() -> None:
    s = settings()
    for name, d in results().items():
        if d.decision is Decision.ACCEPTED and (d.privileged or LABELS[name]["category"] in {"password_reset",
                                                                                             "lifecycle"}):
            admin, _ = resolve_administration(d.message, s.administrations)
            assert authorize(d.message, admin, s.helpdesk.trusted_authserv_ids).authorized, (name, d.reasons)


def test_no_labelled_privileged_request_is_downgraded() -> None:
    """Fail closed: a privileged request must never come out as anagrafica or other."""
    downgraded = {n: (d.category.value, LABELS[n]["note"]) for n, d in results().items()
                  if LABELS[n]["category"] in {"password_reset", "lifecycle"} and not d.privileged}
    assert downgraded == {}


def test_no_ignored_message_is_answered() -> None:
    for name, d in results().items():
        if LABELS[name]["decision"] == "ignored":
            assert d.decision is Decision.IGNORED, (name, d.reasons)
            assert d.take_in is None


@pytest.mark.parametrize("name", sorted(LABELS))
def test_every_result_carries_reasons_and_a_consistent_shape(name: str) -> None:
    d = results()[name]
    assert d.reasons
    if d.decision is Decision.IGNORED:
        assert d.category.value == "other"
    if d.decision is Decision.REJECTED:
        assert d.privileged
    if d.decision is not Decision.IGNORED:
        assert d.take_in is not None and d.take_in.take_in_at >= d.received_at
