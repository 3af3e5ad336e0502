"""The triage bar shared by every labelled set (the development corpus and the held-out set).

At least 97% of decisions and 95% of categories right, zero privileged
requests accepted without authorization, zero ignored messages answered, and
every result shaped as the labelling spec allows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from maild.authorizer import authorize, resolve_administration
from maild.pipeline import Triager
from maild.records import Decision, Disposition
from maild.settings import Settings
from tests.factories import settings

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
PRIVILEGED = {"password_reset", "lifecycle"}
Labels = dict[str, dict[str, object]]


def load_labels(folder: Path) -> Labels:
    labels: Labels = json.loads((folder / "labels.json").read_text())
    return labels


def triage_all(folder: Path, labels: Labels, config: Settings | None = None) -> dict[str, Disposition]:
    triager = Triager.from_settings(config or settings())
    return {name: triager.triage((folder / name).read_bytes(), now=NOW) for name in sorted(labels)}


def assert_meets_the_bar(got: dict[str, Disposition], labels: Labels) -> None:
    wrong_decision = [n for n, d in got.items() if d.decision.value != labels[n]["decision"]]
    wrong_category = [n for n, d in got.items() if d.category.value != labels[n]["category"]]
    report = {n: (got[n].decision.value, got[n].category.value, labels[n]) for n in {*wrong_decision, *wrong_category}}
    assert len(wrong_decision) / len(got) <= 0.03, report
    assert len(wrong_category) / len(got) <= 0.05, report


def assert_no_privileged_accepted_without_authorization(got: dict[str, Disposition], labels: Labels) -> None:
    """Judged by the result and by the label: a privileged request read as harmless counts too."""
    s = settings()
    for name, d in got.items():
        if d.decision is Decision.ACCEPTED and (d.privileged or labels[name]["category"] in PRIVILEGED):
            admin, _ = resolve_administration(d.message, s.administrations)
            assert authorize(d.message, admin, s.helpdesk.trusted_authserv_ids).authorized, (name, d.reasons)


def assert_no_ignored_answered(got: dict[str, Disposition], labels: Labels) -> None:
    for name, d in got.items():
        if labels[name]["decision"] == "ignored":
            assert d.decision is Decision.IGNORED, (name, d.reasons)
            assert d.take_in is None


def assert_consistent_shape(d: Disposition) -> None:
    assert d.reasons
    if d.decision is Decision.IGNORED:
        assert d.category.value == "other"
    if d.decision is Decision.REJECTED:
        assert d.privileged
    if d.decision is not Decision.IGNORED:
        assert d.take_in is not None and d.take_in.take_in_at >= d.received_at
