"""The triage pipeline over the labelled development corpus.

The bar from the issue: at least 97% of decisions and 95% of categories right,
zero privileged requests accepted without authorization and zero ignored
messages answered. The corpus is used as given: no file is special-cased.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache

import pytest

from maild.authorizer import authorize, resolve_administration
from maild.pipeline import Triager
from maild.records import Decision, Disposition
from tests.factories import CORPUS, settings

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
LABELS: dict[str, dict[str, object]] = json.loads((CORPUS / "labels.json").read_text())


@cache
def results() -> dict[str, Disposition]:
    triager = Triager.from_settings(settings())
    return {name: triager.triage((CORPUS / name).read_bytes(), now=NOW) for name in sorted(LABELS)}


def test_corpus_has_sixty_labelled_messages() -> None:
    assert len(LABELS) == 60
    assert all((CORPUS / name).is_file() for name in LABELS)


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
        if d.decision is Decision.ACCEPTED and d.privileged:
            admin, _ = resolve_administration(d.message, s.administrations)
            assert authorize(d.message, admin, s.helpdesk.trusted_authserv_ids).authorized, name


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
