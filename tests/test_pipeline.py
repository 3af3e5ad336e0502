"""The stages after parsing: a privileged frame the classifier could not count still meets authorization."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maild.pipeline import Triager
from maild.records import Address, Category, Decision, ScreenKind
from maild.rules.wordmodel import WordModel, dumps, features, load_word_model, train
from tests.factories import message, settings

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
TRIAGER = Triager.from_settings(settings(triage={"word_model": False}))
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


LIST_MAIL = (b"From: Mario Rossi <mario.rossi@ateneo.example.it>\r\nTo: helpdesk-posta@servizi.example.it\r\n"
             b"Subject: Rubrica del dipartimento\r\nMessage-ID: <l1@ateneo.example.it>\r\n"
             b"Date: Mon, 04 Jan 2027 09:00:00 +0100\r\n%s\r\n"
             b"Buongiorno, vi chiedo di aggiornare il mio numero di telefono in rubrica.\r\n")


@pytest.mark.parametrize(("field", "kind"), [
    (b"List-Unsubscribe: <mailto:tecnici-leave@liste.example.it>", ScreenKind.LIST),
    (b"List-Id: Tecnici <tecnici.liste.example.it>", ScreenKind.LIST),
    (b"X-Failed-Recipients: nessuno@ateneo.example.it", ScreenKind.BOUNCE),
    (b"X-Spam-Flag: YES", ScreenKind.SPAM),
    (b"X-Spam-Status: Yes, score=7.9 required=5.0 tests=BAYES_99,\r\n\tURIBL_BLACK autolearn=no", ScreenKind.SPAM),
    (b"X-Spam: Yes", ScreenKind.SPAM),
    (b"X-MS-Exchange-Organization-SCL: 6", ScreenKind.SPAM),
    (b"X-Forefront-Antispam-Report: CIP:192.0.2.7;CTRY:US;LANG:en;SCL:5;SRV:;IPV:NLI;SFV:SPM;DIR:INB;",
     ScreenKind.SPAM),
])
def test_a_screened_header_field_reaches_the_screener_through_the_pipeline(field: bytes, kind: ScreenKind) -> None:
    d = TRIAGER.triage(LIST_MAIL % (field + b"\r\n"), now=NOW)
    assert (d.decision, d.screen_kind, d.take_in) == (Decision.IGNORED, kind, None)
    name, value = field.decode().split(":", 1)
    assert any(f"{name}: {value.strip()[:20]}" in r for r in d.reasons), d.reasons  # the field as it reads


@pytest.mark.parametrize("field", [b"X-Spam-Flag: NO", b"X-Spam-Status: No, score=-1.1 required=3.4 tests=AWL",
                                   b"X-Spam: No", b"X-MS-Exchange-Organization-SCL: -1",
                                   b"X-Forefront-Antispam-Report: CIP:192.0.2.7;SCL:1;IPV:NLI;SFV:NSPM;DIR:INB;"])
def test_a_negative_spam_verdict_changes_nothing(field: bytes) -> None:
    d = TRIAGER.triage(LIST_MAIL % (field + b"\r\n"), now=NOW)
    assert (d.decision, d.screen_kind) == (Decision.ACCEPTED, None)


def test_the_same_request_without_the_list_field_is_accepted() -> None:
    d = TRIAGER.triage(LIST_MAIL % b"", now=NOW)
    assert (d.decision, d.screen_kind) == (Decision.ACCEPTED, None)


OLD_FORM_MAIL = (b"From: referente.tecnico@ateneo.example.it (Referente tecnico - A. Guidi)\r\n"
                 b"To: helpdesk-posta@servizi.example.it\r\nSubject: Reset password\r\n"
                 b"Authentication-Results: mx.servizi.example.it; dkim=pass header.d=ateneo.example.it; "
                 b"dmarc=pass header.from=ateneo.example.it\r\n"
                 b"Message-ID: <o1@ateneo.example.it>\r\nDate: Mon, 04 Jan 2027 09:00:00 +0100\r\n\r\n"
                 b"Buongiorno, vi chiedo di reimpostare la password della casella segreteria@ateneo.example.it.\r\n")


def test_the_old_address_comment_form_of_the_referente_is_one_sender_and_authorized() -> None:
    d = TRIAGER.triage(OLD_FORM_MAIL, now=NOW)
    assert (d.decision, d.category) == (Decision.ACCEPTED, Category.PASSWORD_RESET), d.reasons
    assert "auth: From referente.tecnico@ateneo.example.it is an authorized sender of Ateneo" in d.reasons


def test_an_address_in_the_old_form_comment_still_refuses() -> None:
    raw = OLD_FORM_MAIL.replace(b"(Referente tecnico - A. Guidi)", b"(vice.referente@ateneo.example.it)")
    raw = raw.replace(b"From: referente.tecnico@", b"From: utente.qualsiasi@")
    d = TRIAGER.triage(raw, now=NOW)
    assert (d.decision, d.category) == (Decision.REJECTED, Category.PASSWORD_RESET), d.reasons
    assert any("more than one way" in r for r in d.reasons), d.reasons


ATTACHED_REQUEST = (b"From: Mario Rossi <mario.rossi@ateneo.example.it>\r\nTo: helpdesk-posta@servizi.example.it\r\n"
                    b"Subject: richiesta\r\nMessage-ID: <a1@ateneo.example.it>\r\n"
                    b"Date: Mon, 04 Jan 2027 09:00:00 +0100\r\nMIME-Version: 1.0\r\n"
                    b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
                    b"Content-Type: text/plain; charset=utf-8\r\n\r\nCome da allegato.\r\n\r\nM. Rossi\r\n--b1\r\n"
                    b"Content-Type: application/pdf; name=\"richiesta_reset_password_PEC_ufficio.pdf\"\r\n"
                    b"Content-Disposition: attachment; filename=\"richiesta_reset_password_PEC_ufficio.pdf\"\r\n"
                    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n")


def test_a_request_only_in_an_attachments_file_name_still_meets_authorization() -> None:
    d = TRIAGER.triage(ATTACHED_REQUEST, now=NOW)
    assert (d.decision, d.category) == (Decision.REJECTED, Category.PASSWORD_RESET), d.reasons
    assert any("in the attachment's file name" in r for r in d.reasons), d.reasons


def word_model(tmp_path: Path) -> WordModel:
    """A model that reads 'pensionate' and 'rottamate' as lifecycle, words no rule knows."""
    texts = [("pensionate la casella del collega", Category.LIFECYCLE),
             ("rottamate la casella del collega", Category.LIFECYCLE),
             ("pensionate e rottamate la vecchia casella", Category.LIFECYCLE),
             ("azzerate la parola chiave", Category.PASSWORD_RESET),
             ("correggete il numero in rubrica", Category.ANAGRAFICA),
             ("quando apre lo sportello", Category.OTHER), ("grazie della risposta", Category.OTHER),
             ("quanto spazio ha la casella del collega", Category.OTHER),
             ("il telefono della casella del collega in rubrica", Category.ANAGRAFICA)]
    path = tmp_path / "model.json"
    path.write_text(dumps(train([(features("", t, 4), c) for t, c in texts], prefix=4, threshold=0.5, min_docs=1)))
    return load_word_model(path)


def modelled(tmp_path: Path, body: str, sender: str | None = None,
             subject: str = "Casella") -> tuple[Category, Decision, str, str]:
    triager = dataclasses.replace(TRIAGER, word_model=word_model(tmp_path))
    changes = {} if sender is None else {"from_addresses": (Address("", sender),), "return_path": f"<{sender}>"}
    d = triager.decide(message(body_text=body, subject=subject, **changes), received_at=NOW)
    return d.category, d.decision, d.review, "\n".join(d.reasons)


def test_a_request_in_words_no_rule_knows_is_refused_when_the_word_model_reads_it_as_privileged(
        tmp_path: Path) -> None:
    assert decide("Pensionate e rottamate la casella del collega.", STRANGER)[:2] == (Category.OTHER,
                                                                                      Decision.ACCEPTED)
    category, decision, review, reasons = modelled(tmp_path, "Pensionate e rottamate la casella del collega.",
                                                   STRANGER)
    assert (category, decision) == (Category.LIFECYCLE, Decision.REJECTED)
    assert review.startswith("word model: a privileged request more likely than not")
    assert "'rottamate'" in review and "'pensionate'" in review
    assert "fail closed: lifecycle asked for by a sender not authorized for it" in reasons


def test_the_word_models_reading_leaves_an_authorized_senders_request_accepted_for_review(tmp_path: Path) -> None:
    category, decision, review, reasons = modelled(tmp_path, "Pensionate e rottamate la casella del collega.")
    assert (category, decision) == (Category.OTHER, Decision.ACCEPTED)
    assert review.startswith("word model:")
    assert "auth: From referente.tecnico@ateneo.example.it is an authorized sender" in reasons


def test_the_word_model_is_not_asked_when_the_rules_read_the_privileged_topic(tmp_path: Path) -> None:
    body = "Non vi chiedo di eliminare la casella: pensionate e rottamate solo il vecchio telefono."
    category, decision, review, reasons = modelled(tmp_path, body, STRANGER)
    assert (category, decision) == (Category.OTHER, Decision.ACCEPTED)
    assert "word model" not in reasons and review == ""


def test_an_ordinary_request_gets_no_reading_from_the_word_model(tmp_path: Path) -> None:
    category, decision, review, reasons = modelled(tmp_path, "Quando apre lo sportello? Grazie.", STRANGER)
    assert (category, decision, review) == (Category.OTHER, Decision.ACCEPTED, "")
    assert "word model" not in reasons


def test_the_word_model_reads_the_senders_own_subject_not_a_replys(tmp_path: Path) -> None:
    own = modelled(tmp_path, "Ok, grazie.", STRANGER, subject="Pensionate e rottamate la casella del collega")
    assert own[:2] == (Category.LIFECYCLE, Decision.REJECTED)
    replied = modelled(tmp_path, "Ok, grazie.", STRANGER, subject="Re: Pensionate e rottamate la casella del collega")
    assert replied[:3] == (Category.OTHER, Decision.ACCEPTED, "")
