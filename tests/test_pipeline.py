"""The stages after parsing: a privileged frame the classifier could not count still meets authorization."""

from __future__ import annotations

from datetime import UTC, datetime

from maild.pipeline import Triager
from maild.records import Address, Category, Decision
from tests.factories import message, settings

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
TRIAGER = Triager.from_settings(settings())
STRANGER = "utente.qualsiasi@ateneo.example.it"


def decide(body: str, sender: str | None = None, subject: str = "Richiesta") -> tuple[Category, Decision, str, str]:
    changes = {} if sender is None else {"from_addresses": (Address("", sender),), "return_path": f"<{sender}>"}
    d = TRIAGER.decide(message(body_text=body, subject=subject, **changes), received_at=NOW)
    return d.category, d.decision, d.review, "\n".join(d.reasons)


def test_unauthorized_privileged_frame_below_the_threshold_is_refused_not_accepted() -> None:
    category, decision, review, reasons = decide("Ok, go ahead and delete it.", STRANGER)
    assert (category, decision) == (Category.LIFECYCLE, Decision.REJECTED)
    assert "fail closed: lifecycle asked for by a sender not authorized for it" in reasons
    assert review.startswith("requested lifecycle evidence below the threshold")


def test_authorized_privileged_frame_below_the_threshold_is_accepted_for_review() -> None:
    category, decision, review, _ = decide("Ok, go ahead and delete it.")
    assert (category, decision) == (Category.OTHER, Decision.ACCEPTED)
    assert review.startswith("requested lifecycle evidence below the threshold")


def test_a_question_on_a_privileged_topic_is_accepted_as_other_from_anyone() -> None:
    category, decision, review, _ = decide("Se dovessi dimenticare la password, a chi mi rivolgo?", STRANGER)
    assert (category, decision, review) == (Category.OTHER, Decision.ACCEPTED, "")


def test_review_reaches_the_disposition() -> None:
    _, _, review, _ = decide("Buongiorno, grazie.", subject="Eliminazione casella PEC ufficio gare")
    assert review == "category lifecycle decided from the subject alone"
