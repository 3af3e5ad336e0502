"""The triage pipeline over the labelled development corpus.

The bar from the issue: at least 97% of decisions and 95% of categories right,
zero privileged requests accepted without authorization and zero ignored
messages answered. The corpus is used as given: no file is special-cased.
"""

from __future__ import annotations

from functools import cache

import pytest

from maild.records import Disposition
from tests.factories import CORPUS
from tests.labelled import (
    assert_consistent_shape,
    assert_meets_the_bar,
    assert_no_ignored_answered,
    assert_no_privileged_accepted_without_authorization,
    load_labels,
    triage_all,
)

LABELS = load_labels(CORPUS)


@cache
def results() -> dict[str, Disposition]:
    return triage_all(CORPUS, LABELS)


def test_corpus_has_sixty_labelled_messages() -> None:
    assert len(LABELS) == 60
    assert all((CORPUS / name).is_file() for name in LABELS)


def test_decisions_and_categories_meet_the_bar() -> None:
    assert_meets_the_bar(results(), LABELS)


def test_no_privileged_request_is_accepted_without_authorization() -> None:
    assert_no_privileged_accepted_without_authorization(results(), LABELS)


def test_no_ignored_message_is_answered() -> None:
    assert_no_ignored_answered(results(), LABELS)


@pytest.mark.parametrize("name", sorted(LABELS))
def test_every_result_carries_reasons_and_a_consistent_shape(name: str) -> None:
    assert_consistent_shape(results()[name])
