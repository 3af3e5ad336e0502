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
from collections import Counter
from functools import cache

import pytest

from maild.records import Category, Disposition
from tests.factories import CORPUS, REPO
from tests.labelled import (
    assert_consistent_shape,
    assert_meets_the_bar,
    assert_no_ignored_answered,
    assert_no_privileged_accepted_without_authorization,
    load_labels,
    triage_all,
)

HELDOUT = REPO / "tests" / "data" / "heldout"
LABELS = load_labels(HELDOUT)
VALID = {("ignored", "other"), ("rejected", "password_reset"), ("rejected", "lifecycle"),
         *(("accepted", c.value) for c in Category)}


@cache
def results() -> dict[str, Disposition]:
    return triage_all(HELDOUT, LABELS)


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
    assert_meets_the_bar(results(), LABELS)


def test_no_privileged_request_is_accepted_without_authorization() -> None:
    assert_no_privileged_accepted_without_authorization(results(), LABELS)


def test_no_labelled_privileged_request_is_downgraded() -> None:
    """Fail closed: a privileged request must never come out as anagrafica or other."""
    downgraded = {n: (d.category.value, LABELS[n]["note"]) for n, d in results().items()
                  if LABELS[n]["category"] in {"password_reset", "lifecycle"} and not d.privileged}
    assert downgraded == {}


def test_no_ignored_message_is_answered() -> None:
    assert_no_ignored_answered(results(), LABELS)


@pytest.mark.parametrize("name", sorted(LABELS))
def test_every_result_carries_reasons_and_a_consistent_shape(name: str) -> None:
    assert_consistent_shape(results()[name])
