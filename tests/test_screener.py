"""The screener: automatic mail is ignored, human mail goes on, with reasons and a kind.

Each signal is built here in the shape real mail systems give it, and next to it the
same words as people write them (a question about a bounce, a forwarded error, an
out-of-office setting): the first must be ignored, the second must stay a request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from maild.pipeline import Triager
from maild.records import Address, Attachment, Category, Decision, ScreenKind, ScreenResult
from maild.rules.screening import ScreeningRules, load_screening
from maild.screener import screen
from tests.factories import message, settings

OWN = ("helpdesk-posta@servizi.example.it",)
PERSON = (Address("Mario Rossi", "mario.rossi@comune.example.it"),)
ORIGINAL = (Attachment("", "message/rfc822", 2400),)
NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent


@cache
def rules() -> ScreeningRules:
    return load_screening()


def screened(headers: dict[str, str] | None = None, **changes: Any) -> ScreenResult:
    return screen(message(**changes), OWN, rules(), headers or {})


def from_person(**changes: Any) -> ScreenResult:
    """A message from an ordinary person's address, with ``changes``."""
    return screened(**{"from_addresses": PERSON, "return_path": f"<{PERSON[0].addr}>", **changes})


def assert_automatic(result: ScreenResult, kind: ScreenKind, reason: str) -> None:
    assert not result.human, result.reasons
    assert result.kind is kind, result.reasons
    assert any(reason in r for r in result.reasons), result.reasons


def assert_human(result: ScreenResult) -> None:
    assert result.human, result.reasons
    assert result.kind is None
    assert result.reasons[0] == "screen: no sign of automatic mail"


# --------------------------------------------------------------------------
# Header signs (RFC 3834, RFC 3464, RFC 8098, RFC 5965): each enough alone, each with its kind


@pytest.mark.parametrize(
    ("changes", "reason", "kind"),
    [
        ({"auto_submitted": "auto-replied"}, "Auto-Submitted", ScreenKind.AUTO_REPLY),
        ({"auto_submitted": "auto-generated (vacation)"}, "Auto-Submitted", ScreenKind.AUTO_REPLY),
        ({"x_autoreply": True}, "X-Autoreply", ScreenKind.AUTO_REPLY),
        ({"precedence": "bulk"}, "Precedence: bulk", ScreenKind.LIST),
        ({"precedence": "Junk"}, "Precedence: junk", ScreenKind.LIST),
        ({"precedence": "list"}, "Precedence: list", ScreenKind.LIST),
        ({"precedence": "auto_reply"}, "Precedence: auto_reply", ScreenKind.AUTO_REPLY),
        ({"content_type": "multipart/report", "report_type": "delivery-status"}, "delivery-status", ScreenKind.BOUNCE),
        ({"content_type": "multipart/report", "report_type": "disposition-notification"}, "disposition",
         ScreenKind.RECEIPT),
        ({"content_type": "multipart/report", "report_type": "feedback-report"}, "feedback-report",
         ScreenKind.FEEDBACK_REPORT),
        ({"return_path": "<>"}, "empty Return-Path", ScreenKind.BOUNCE),
        ({"return_path": ""}, "empty Return-Path", ScreenKind.BOUNCE),
        ({"from_addresses": (Address("Mail Delivery System", "MAILER-DAEMON@mx.example.it"),)}, "mail system",
         ScreenKind.BOUNCE),
        ({"from_addresses": (Address("", "postmaster@ateneo.example.it"),)}, "mail system", ScreenKind.BOUNCE),
        ({"from_addresses": (Address("Help", "Helpdesk-Posta@Servizi.Example.IT"),)}, "own address",
         ScreenKind.OWN_MAIL),
        ({"from_addresses": (), "subject": "", "date": None}, "no From, Subject or Date", ScreenKind.AUTO_REPLY),
    ],
)
def test_automatic_mail_is_not_human(changes: dict[str, Any], reason: str, kind: ScreenKind) -> None:
    assert_automatic(screened(**changes), kind, reason)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"auto_submitted": "no"},
        {"auto_submitted": "No (human)"},
        {"precedence": "first-class"},
        {"return_path": None},
        {"content_type": "multipart/mixed"},
        {"from_addresses": ()},  # a person's mail without a From: recorded with its ticket, never answered
    ],
)
def test_human_mail_passes(changes: dict[str, Any]) -> None:
    assert_human(screened(**changes))


def test_every_sign_is_reported() -> None:
    result = screened(auto_submitted="auto-replied", x_autoreply=True, precedence="bulk")
    assert len(result.reasons) == 3


def test_the_kind_is_the_most_specific_sign_s() -> None:
    bounce = screened(auto_submitted="auto-replied", return_path="<>",
                      from_addresses=(Address("", "MAILER-DAEMON@mx.example.it"),))
    assert bounce.kind is ScreenKind.BOUNCE  # a mail system's notice, not an out-of-office
    generic = screened(auto_submitted="auto-generated", precedence="bulk")
    assert generic.kind is ScreenKind.LIST  # neither says more than "automatic": the first kind in order


# --------------------------------------------------------------------------
# Mailboxes that are never a person


@pytest.mark.parametrize(
    ("sender", "kind"),
    [
        ("post_master@relay.example.org", ScreenKind.BOUNCE),
        ("Mail-Daemon@smtp.example.com", ScreenKind.BOUNCE),
        ("MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@comune.example.it", ScreenKind.BOUNCE),
        ("Virus_Alert_Gateway@filtro.example.org", ScreenKind.BOUNCE),
        ("bounce-7781@esp.example.net", ScreenKind.BOUNCE),
        ("tecnici-admin@liste.example.it", ScreenKind.LIST),
        ("tecnici-bounces@liste.example.it", ScreenKind.LIST),
        ("tecnici-request@liste.example.it", ScreenKind.LIST),
        ("owner-tecnici@liste.example.it", ScreenKind.LIST),
        ("noreply@notifiche.example.it", ScreenKind.AUTO_REPLY),
        ("do-not-reply@portale.example.it", ScreenKind.AUTO_REPLY),
    ],
)
def test_a_from_that_is_never_a_person_is_automatic(sender: str, kind: ScreenKind) -> None:
    assert_automatic(screened(from_addresses=(Address("Servizio", sender),)), kind, "never a person")


def test_list_mail_is_known_by_its_sender_or_envelope() -> None:
    assert_automatic(from_person(sender=(Address("", "docenti-bounces@liste.example.it"),)), ScreenKind.LIST,
                     "sent by docenti-bounces@liste.example.it")
    assert_automatic(from_person(return_path="<owner-docenti@liste.example.it>"), ScreenKind.LIST, "sent by")


def test_a_form_relaying_a_person_through_a_no_reply_sender_is_not_list_mail() -> None:
    assert_human(from_person(sender=(Address("Modulo web", "noreply@comune.example.it"),)))


def test_a_pec_envelope_is_a_person_and_a_pec_receipt_is_not() -> None:
    pec = (Address("Per conto di: mario.rossi@pec.example.it", "posta-certificata@pec.provider.example.it"),)
    assert_human(screened(from_addresses=pec, subject="POSTA CERTIFICATA: Richiesta nuova casella"))
    receipt = "Ricevuta di accettazione\nIl messaggio è stato accettato dal sistema ed inoltrato."
    assert_automatic(screened(from_addresses=pec, subject="ACCETTAZIONE: Richiesta nuova casella", body_text=receipt),
                     ScreenKind.RECEIPT, "PEC receipt")
    assert_human(from_person(subject="Consegna: richiesta nuova casella"))  # the same subject from a person


# --------------------------------------------------------------------------
# Header fields the parsed message does not carry yet (List-*, X-Auto-Response-Suppress...)


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({"list-id": "Tecnici informatici <tecnici.liste.example.it>"}, ScreenKind.LIST),
        ({"list-unsubscribe": "<mailto:tecnici-request@liste.example.it?subject=unsubscribe>"}, ScreenKind.LIST),
        ({"list-post": "NO"}, ScreenKind.LIST),
        ({"x-failed-recipients": "mario@example.it"}, ScreenKind.BOUNCE),
    ],
)
def test_list_fields_and_failed_recipients_are_enough_alone(headers: dict[str, str], kind: ScreenKind) -> None:
    assert_automatic(from_person(headers=headers), kind, "")


def test_x_auto_response_suppress_counts_only_with_another_sign() -> None:
    suppress = {"x-auto-response-suppress": "All"}
    assert_human(from_person(headers=suppress, subject="Nuova casella"))
    assert_automatic(from_person(headers=suppress, subject="Automatic reply: Nuova casella", body_text=""),
                     ScreenKind.AUTO_REPLY, "X-Auto-Response-Suppress")


# --------------------------------------------------------------------------
# A spam filter's verdict: honoured when it says spam, and only then


@pytest.mark.parametrize(
    ("headers", "shown"),
    [
        ({"x-spam-flag": "YES"}, "X-Spam-Flag: YES"),
        ({"x-spam-status": "Yes, score=7.9 required=5.0 tests=BAYES_99,URIBL_BLACK autolearn=no version=3.4.6"},
         "X-Spam-Status: Yes, score=7.9 required=5.0"),
        ({"x-spam-status": "Yes, hits=12.3 required=5.0"}, "X-Spam-Status: Yes, hits=12.3"),  # SpamAssassin 2.x
        ({"x-spam-status": "Yes, score=15.10"}, "X-Spam-Status: Yes, score=15.10"),  # rspamd's x-spam-status
        ({"x-spam": "Yes"}, "X-Spam: Yes"),  # rspamd's own field
        ({"x-ms-exchange-organization-scl": "5"}, "X-MS-Exchange-Organization-SCL: 5"),
        ({"x-ms-exchange-organization-scl": "9"}, "X-MS-Exchange-Organization-SCL: 9"),
        ({"x-forefront-antispam-report": "CIP:192.0.2.7;CTRY:US;LANG:en;SCL:6;SRV:;IPV:NLI;SFV:SPM;"
                                         "H:mx.example.net;PTR:mx.example.net;CAT:SPM;SFS:(13230031)(4636009);DIR:INB;"},
         "X-Forefront-Antispam-Report: CIP:192.0.2.7;CTRY:US;LANG:en;SCL:6;"),
        ({"x-forefront-antispam-report": "CIP:192.0.2.7;CTRY:US;LANG:en;SRV:;IPV:NLI;H:mx.example.net;"
                                         "PTR:mx.example.net;CAT:NONE;SFTY:;SFV:SKS;DIR:INB;"},
         "X-Forefront-Antispam-Report: … SFV:SKS"),  # a mail flow rule's verdict, far into the field
    ],
)
def test_a_spam_verdict_of_the_receiving_server_makes_a_message_spam(headers: dict[str, str], shown: str) -> None:
    result = from_person(headers=headers, subject="Rubrica", body_text="Buongiorno, vi chiedo di aggiornare il mio "
                                                                       "numero di telefono.")
    assert_automatic(result, ScreenKind.SPAM, "screen: the receiving server marked it as spam")
    assert any(shown in r for r in result.reasons), result.reasons


@pytest.mark.parametrize(
    "headers",
    [
        {"x-spam-flag": "NO"},
        {"x-spam-status": "No, score=-1.1 required=3.4 tests=AWL,BAYES_00,SPF_PASS autolearn=ham"},
        {"x-spam-status": "No, hits=-5.0 required=5.0"},
        {"x-spam": "No"},
        {"x-ms-exchange-organization-scl": "-1"},
        {"x-ms-exchange-organization-scl": "1"},
        {"x-forefront-antispam-report": "CIP:192.0.2.7;CTRY:IT;LANG:it;SCL:1;SRV:;IPV:NLI;SFV:NSPM;DIR:INB;"},
        {"x-forefront-antispam-report": "CIP:192.0.2.7;SCL:-1;SFV:SKN;DIR:INB;"},
        {"x-forefront-antispam-report": "CIP:192.0.2.7;SCL:1;SFV:SKQ;DIR:INB;"},  # released from quarantine
    ],
)
def test_a_negative_or_no_verdict_changes_nothing(headers: dict[str, str]) -> None:
    assert_human(from_person(headers=headers, subject="Rubrica", body_text="Vi chiedo di aggiornare il mio numero."))


@pytest.mark.parametrize(
    "body",
    [
        "Buongiorno, da ieri ricevo molto spam sulla casella dell'ufficio. Potete attivare un filtro?",
        "Hi, a message of mine was marked as spam by your server: the header says X-Spam-Flag: YES. Can you check?",
        "Il collega non riceve le mie mail: finiscono nello spam (X-Spam-Status: Yes, score=5.2). Come mai?",
    ],
)
def test_a_person_writing_about_spam_is_a_request(body: str) -> None:
    assert_human(from_person(subject="Spam", body_text=body))
    assert_human(from_person(subject="X-Spam-Flag: YES", body_text=body))


def test_a_bounce_marked_as_spam_is_a_bounce_and_bulk_spam_is_spam() -> None:
    spam = {"x-spam-flag": "YES"}
    bounce = screened(headers=spam, content_type="multipart/report", report_type="delivery-status")
    assert bounce.kind is ScreenKind.BOUNCE  # what the mail system says it is, before the filter's verdict
    bulk = from_person(headers={**spam, "list-unsubscribe": "<https://news.example.net/u/81>"})
    assert bulk.kind is ScreenKind.SPAM  # spam carries List-Unsubscribe too


# --------------------------------------------------------------------------
# Bounces known only by their content, and people writing about bounces


GATEWAY_EN = (
    "This is the mail gateway at filtro.comune.example.it.\n\n"
    "Your message to ufficio.tributi@comune.example.it could not be delivered.\n"
    "  ufficio.tributi@comune.example.it: host mx.comune.example.it said: 550 5.1.1 user unknown\n"
)
GATEWAY_IT = (
    "Il messaggio non è stato consegnato ai seguenti destinatari:\n\n"
    "  protocollo@comune.example.it\n  Errore: 550 5.1.1 utente sconosciuto\n"
)


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Undeliverable: Richiesta nuova casella", "body_text": GATEWAY_EN},
        {"subject": "Messaggio non consegnato: verbale", "body_text": GATEWAY_IT},
        {"subject": "Returned mail: see the report", "body_text": "", "attachments": ORIGINAL},
        {"subject": "Re: verbale", "body_text": GATEWAY_EN},  # no bounce subject: wording and status together
        {"subject": "Delivery Failure", "body_text": (
            "Could not deliver message to this recipient:\n\nFailed Recipient: a@example.it\n"
            "Reason: Remote host said: 552 mailbox over quota\n\n"
            "   -- The header and top 15 lines of the message follows --\n\n"
            "Received: from mx.example.it (mx.example.it [192.0.2.1])\n\tby relay.example.it with ESMTP\n")},
    ],
)
def test_a_bounce_from_a_human_looking_address_is_known_by_its_content(changes: dict[str, Any]) -> None:
    assert_automatic(from_person(**changes), ScreenKind.BOUNCE, "delivery-failure")


@pytest.mark.parametrize(
    "changes",
    [
        # A question about an error, with a bounce subject and the error pasted.
        {"subject": "Messaggio non consegnato", "body_text": (
            "Buongiorno,\nscrivendo a mario.bianchi@comune.example.it mi torna questo errore:\n"
            "550 5.1.1 User unknown\nPotete verificare? Grazie\nMario")},
        {"subject": "Undeliverable", "body_text": (
            "I got this error when writing to the dean, can you check?\n\n"
            "  dean@ateneo.example.it: host mx said: 550 5.1.1 recipient address rejected\n")},
        # A bounce forwarded by the person who got it.
        {"subject": "I: Undeliverable: Richiesta nuova casella", "body_text": (
            "Vi giro l'errore.\n\n-----Messaggio originale-----\nDa: Mail Delivery System\nInviato: lunedì\n\n"
            + GATEWAY_EN)},
        {"subject": "Fwd: Mail delivery failed: returning message to sender", "body_text": (
            "---------- Forwarded message ---------\nFrom: Mail Delivery Subsystem <mailer-daemon@example.org>\n"
            "Date: Mon, 4 Jan 2027\n\n"
            + GATEWAY_EN)},
        {"subject": "FW: Delivery Status Notification (Failure) verbale", "body_text": "", "attachments": ORIGINAL},
        # A follow-up to a ticket about a bounce.
        {"subject": "Re: [HD-2027-0100] Messaggio non consegnato", "body_text": (
            "Ancora lo stesso errore: 550 5.1.1 user unknown\n\n"
            "Il giorno lun 4 gen 2027 Help Desk ha scritto:\n> ...")},
        # A question, a first-person account, a signed note, each before the error pasted under it.
        {"subject": "Returned mail: see transcript (Mario)", "body_text": (
            "Did you get my message? It came back.\n\nTranscript of session follows:\n"
            "... while talking to mx.example.org.:\n>>> RCPT To:<bob@example.org>\n"
            "<<< 550 5.1.1 <bob@example.org>... no such user here\n")},
        {"subject": "Undelivered Mail Returned to Sender: verbale", "body_text": (
            "La mia mail al collega torna indietro.\n\nhost mx.example.it said: 550 5.1.1 user unknown\n")},
        {"subject": "Delivery Status Notification (Failure) - Anna", "body_text": (
            "Vedete sotto.\nGrazie\nAnna\n\nDelivery to the following recipient has failed permanently:\n"
            "  a.bianchi@example.it\n  550 5.1.1 The email account that you tried to reach does not exist.\n")},
        # Bounce words without a bounce around them.
        {"subject": "Problema invio", "body_text": "Mi torna indietro un messaggio undeliverable, cosa significa?"},
        {"subject": "Mail non recapitate", "body_text": "Le mail al collega tornano indietro con l'errore 550 5.7.1."},
        {"subject": "Errore", "body_text": "Uso Outlook versione 5.1.1 e il postmaster mi ha detto di scrivervi."},
    ],
)
def test_a_person_writing_about_a_bounce_is_a_request(changes: dict[str, Any]) -> None:
    assert_human(from_person(**changes))


def test_a_person_s_words_are_named_when_they_outweigh_the_content() -> None:
    result = from_person(subject="Messaggio non consegnato",
                         body_text="Buongiorno, mi torna questo errore: 550 5.1.1 user unknown")
    assert any(r.startswith("screen: written by a person (a greeting") for r in result.reasons), result.reasons


# --------------------------------------------------------------------------
# Auto-replies without RFC 3834 headers, and people asking about them


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("AUTO: Bianchi, Mario is out of the office (returning 11/01/2027)", "Back on Monday."),
        ("Auto reply: Nuova casella", "I am out of the office until Monday with limited access to e-mail."),
        ("Risposta automatica: Richiesta reset", "Sono assente fino al 7 gennaio. Risponderò al mio rientro."),
        ("Automatic reply: password", "This is an automated response: I will reply as soon as possible."),
    ],
)
def test_an_auto_reply_without_headers_is_known_by_its_subject_and_words(subject: str, body: str) -> None:
    assert_automatic(from_person(subject=subject, body_text=body), ScreenKind.AUTO_REPLY, "")


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Risposta automatica: come si attiva?",
         "Buongiorno, sarò in ferie dal 1 agosto: come faccio ad attivare la risposta automatica?"),
        ("Out of office: how do I set it?", "Hello, I will be on leave next week; how do I set an automatic reply?"),
        ("Risposta automatica non funziona", "Sono fuori sede e la risposta automatica non parte."),
        ("Ferie", "Sarò assente dal 3 al 10 agosto, potete inoltrare la mia posta alla collega?"),
    ],
)
def test_a_person_asking_about_out_of_office_is_a_request(subject: str, body: str) -> None:
    assert_human(from_person(subject=subject, body_text=body))


@pytest.mark.parametrize(
    "subject",
    ["Out of Office: Re: Richiesta nuova casella [HD-2027-000123]", "Automatic reply: RE: budget",
     "Risposta automatica: Re: password [HD-2027-000007]", "Assenza: R: verbale"],
)
def test_an_auto_reply_repeating_the_subject_it_answers_is_automatic_whatever_its_body(subject: str) -> None:
    assert_automatic(from_person(subject=subject, body_text="Buongiorno, torno lunedì."), ScreenKind.AUTO_REPLY, "")


def test_a_person_s_subject_that_only_starts_like_an_absence_notice_is_a_request() -> None:
    assert_human(from_person(subject="Out of office: Monday", body_text="I will be out of the office on Monday."))
    assert_human(from_person(subject="Re: Automatic reply: budget [HD-2027-000123]", body_text="Grazie, ricevuto."))


def test_a_read_receipt_quoting_a_question_is_still_a_receipt() -> None:
    body = ("Your message\n\n  To: Help Desk\n  Subject: Re: [HD-2027-0100] can you reset my password?\n"
            "  Sent: Monday, January 4, 2027 9:00 AM\n\nwas read on Monday, January 4, 2027 9:30 AM.")
    assert_automatic(from_person(subject="Read: can you reset my password?", body_text=body), ScreenKind.RECEIPT, "")


def test_what_speaks_for_a_person_in_a_bounce_does_not_in_an_auto_reply() -> None:
    body = "Sono assente fino al 7 gennaio. Per urgenze potete contattare la segreteria."
    assert_automatic(from_person(subject="Risposta automatica: Richiesta", body_text=body), ScreenKind.AUTO_REPLY, "")


def test_a_challenge_response_robot_is_automatic_and_a_person_quoting_one_is_not() -> None:
    robot = "This account is protected. Please click the link below to confirm you are human:\nhttps://verify.example.net/c/81"
    assert_automatic(from_person(subject="Re: Richiesta", body_text=robot), ScreenKind.AUTO_REPLY, "challenge")
    asking = "Buongiorno, scrivendo a un collega mi arriva: 'confirm you are human https://x.example.net' è sicuro?"
    assert_human(from_person(subject="Messaggio strano", body_text=asking))


def test_bulk_mail_with_its_way_out_is_list_mail_and_a_person_asking_to_leave_a_list_is_not() -> None:
    newsletter = ("Le novità del mese: corsi, convegni e offerte.\n\n"
                  "Se non desideri più ricevere la newsletter clicca qui: https://news.example.it/u/81")
    assert_automatic(from_person(subject="Newsletter di gennaio", body_text=newsletter), ScreenKind.LIST, "bulk mail")
    asking = ("Buongiorno, in fondo alla newsletter c'è scritto \"Se non desideri più ricevere la newsletter "
              "clicca qui: https://news.example.it/u/81\" ma il link non funziona. Potete cancellarmi voi?")
    assert_human(from_person(subject="Newsletter", body_text=asking))


NEWSLETTER = "Offerte del mese: corsi, convegni e sconti. Hai mai pensato di fare di più?\n\nCancella iscrizione"


@pytest.mark.parametrize("link", ["Unsubscribe", "Click here to unsubscribe", "Opt-out", "Remove your email",
                                  "Disiscriviti", "Cancella iscrizione", "Annulla l'iscrizione"])
def test_bulk_mail_with_an_unsubscribe_button_is_list_mail_whatever_it_writes(link: str) -> None:
    result = from_person(subject="Offerte", body_text=NEWSLETTER, body_from_html=True,
                         link_texts=("Scopri le offerte", link))
    assert_automatic(result, ScreenKind.LIST, f"bulk mail's way out: a link whose whole text is an unsubscribe "
                                              f"or opt-out: link has “{link}”")


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Fwd: Offerte del mese", "---------- Forwarded message ---------\nDa: Offerte <news@promo.example.net>\n\n"
                                  + NEWSLETTER),
        ("I: Offerte del mese", NEWSLETTER),
        ("Re: Offerte del mese", "Non voglio più riceverle.\n\nIl giorno lun 4 gen 2027 alle 10:00 Offerte "
                                 "ha scritto:\n\n" + NEWSLETTER),
        ("Re: Offerte [HD-2027-000123]", "Ecco la newsletter di cui parlavo.\n" + NEWSLETTER),
        ("Offerte", "Buongiorno, ricevo ogni giorno questa pubblicità, potete bloccarla?\n\n" + NEWSLETTER),
    ],
)
def test_a_person_passing_bulk_mail_on_is_a_request(subject: str, body: str) -> None:
    result = from_person(subject=subject, body_text=body, body_from_html=True, link_texts=("Cancella iscrizione",))
    assert_human(result)
    assert any("written by a person" in r and "link has “Cancella iscrizione”" in r for r in result.reasons)


@pytest.mark.parametrize(
    ("body", "links"),
    [
        ("Please unsubscribe me from the alumni-fisica list.", ()),
        ("Vi chiedo di cancellarmi dalla lista docenti: disiscriviti non funziona.", ()),
        ("How do I unsubscribe from the seminars list? The page says: unsubscribe", ()),
        ("Come da istruzioni, ecco il link per la disiscrizione dalla lista.",
         ("https://liste.example.it/unsubscribe/docenti", "How to unsubscribe from a mailing list")),
        ("Vorrei rimuovere un iscritto dalla lista.", ("Remove a member from the list", "Iscrizione al corso")),
    ],
)
def test_a_person_asking_to_leave_a_list_in_words_or_links_is_a_request(body: str, links: tuple[str, ...]) -> None:
    assert_human(from_person(subject="Lista", body_text=body, body_from_html=bool(links), link_texts=links))


# --------------------------------------------------------------------------
# Abuse reports and notification services


def test_a_provider_abuse_report_with_the_original_attached_is_a_feedback_report() -> None:
    assert_automatic(from_person(subject="complaint about message from 192.0.2.7", body_text="", attachments=ORIGINAL),
                     ScreenKind.FEEDBACK_REPORT, "abuse-report")


def test_a_person_forwarding_a_phishing_as_attachment_is_a_request() -> None:
    assert_human(from_person(subject="Segnalazione spam", body_text="", attachments=ORIGINAL))
    assert_human(from_person(subject="Abuse report: phishing", attachments=ORIGINAL,
                             body_text="Buongiorno, vi inoltro un messaggio sospetto."))


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ('{"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}, "mail": {}}', ScreenKind.BOUNCE),
        ('{"notificationType": "Complaint", "complaint": {}}', ScreenKind.FEEDBACK_REPORT),
        ('[{"email": "a@example.it", "event": "bounce", "reason": "550 5.1.1"}]', ScreenKind.BOUNCE),
    ],
)
def test_a_notification_service_json_record_is_automatic(body: str, kind: ScreenKind) -> None:
    assert_automatic(from_person(subject="AWS Notification Message", body_text=body), kind, "notification service")


def test_json_pasted_by_a_person_is_a_request() -> None:
    assert_human(from_person(body_text='Buongiorno, cosa vuol dire {"notificationType": "Bounce"}?'))


# --------------------------------------------------------------------------
# Through the whole pipeline: a raw gateway bounce is ignored, the person's copy accepted


def raw(sender: str, subject: str, body: str) -> bytes:
    return (f"From: {sender}\r\nTo: helpdesk-posta@servizi.example.it\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(body))}@comune.example.it>\r\nDate: Mon, 4 Jan 2027 08:00:00 +0100\r\n"
            f"Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n{body}").encode()


def test_the_pipeline_ignores_a_gateway_bounce_and_accepts_a_person_asking_about_one() -> None:
    triager = Triager.from_settings(settings())
    bounce = triager.triage(raw('"Antispam Gateway" <filtro@comune.example.it>', "Undeliverable: verbale", GATEWAY_EN),
                            now=NOW)
    assert bounce.decision is Decision.IGNORED and bounce.take_in is None
    asking = triager.triage(raw("Mario Rossi <mario.rossi@comune.example.it>", "Undeliverable: verbale",
                                "Buongiorno, mi è arrivato questo, potete verificare?\n\n" + GATEWAY_EN), now=NOW)
    assert asking.decision is Decision.ACCEPTED and asking.category is Category.OTHER, asking.reasons


def html_raw(sender: str, subject: str, html: str) -> bytes:
    return (f"From: {sender}\r\nTo: helpdesk-posta@servizi.example.it\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(html))}@promo.example.net>\r\nDate: Mon, 4 Jan 2027 08:00:00 +0100\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}").encode()


SPAM_HTML = ("<html><body><p>Hope you have seen the offer. Have you ever had the idea that you can do the same?</p>"
             '<p><a href="http://offer.example.net/pl/">HAVE A LOOK</a></p>'
             '<p><a href="http://offer.example.net/del.php?mail=helpdesk">Remove your email</a></p></body></html>')


def test_the_pipeline_ignores_html_bulk_mail_and_accepts_a_person_forwarding_it() -> None:
    triager = Triager.from_settings(settings())
    spam = triager.triage(html_raw('"Ilene" <offers@promo.example.net>', "My dream", SPAM_HTML), now=NOW)
    assert (spam.decision, spam.screen_kind, spam.take_in) == (Decision.IGNORED, ScreenKind.LIST, None), spam.reasons
    forward = ("<p>Buongiorno, continuo a ricevere questi messaggi: potete bloccarli?</p>"
               "<p>---------- Forwarded message ---------<br>From: Ilene &lt;offers@promo.example.net&gt;<br>"
               "Subject: My dream</p>" + SPAM_HTML)
    asking = triager.triage(html_raw("Mario Rossi <mario.rossi@comune.example.it>", "Fwd: My dream", forward),
                            now=NOW)
    assert asking.decision is Decision.ACCEPTED and asking.screen_kind is None, asking.reasons


@pytest.mark.parametrize("date", ["Wed, 16 Aug 2006 20:52:12 +0360", "Mon, 3 Mar 2025 10:00:00 +1900"])
def test_a_date_in_a_time_zone_that_does_not_exist_is_bulk_mail_software(date: str) -> None:
    result = from_person(headers={"date": date}, subject="Hey", body_text="Thought you would want to check this out.")
    assert_automatic(result, ScreenKind.SPAM, "its Date has a time zone that does not exist")


@pytest.mark.parametrize("date", ["Mon, 7 Dec 2026 09:12:00 +0100", "Fri, 2 Jan 2004 11:43:19 -0330",
                                  "Sat, 1 Mar 2025 10:00:00 +1400", "Mon, 7 Dec 2026 09:12:00 +0545 (NPT)",
                                  "Mon, 7 Dec 2026 09:12 -1200", "7 Dec 2026 09:12 GMT", "lunedì 7 dicembre"])
def test_a_date_in_any_real_time_zone_changes_nothing(date: str) -> None:
    body = "Vi chiedo di aggiornare il mio numero."
    assert_human(from_person(headers={"date": date}, subject="Rubrica", body_text=body))


def test_reasons_read_in_the_rules_order_in_every_process() -> None:
    """A bounce matching several rules gives its reasons in one order, whatever the hash seed of the process."""
    script = (
        "from maild.rules.screening import load_screening\n"
        "from maild.records import Address\n"
        "from maild.screener import screen\n"
        "from tests.factories import message\n"
        "body = ('Delivery to the following recipients failed.\\n'\n"
        "        'Reporting-MTA: dns; mx.example.it\\nRemote host said: 550 5.1.1 user unknown\\n')\n"
        "m = message(from_addresses=(Address('Mario Rossi', 'mario.rossi@comune.example.it'),), body_text=body)\n"
        "print(screen(m, ('helpdesk-posta@servizi.example.it',), load_screening()).reasons)\n"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)}, cwd=ROOT).stdout
        for seed in range(6)
    }
    assert len(outputs) == 1, outputs
    assert outputs.pop().count("screen: ") >= 2
