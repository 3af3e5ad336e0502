"""Reading PEC from raw bytes: every kind and receipt type, the certified sender candidate, hostile input.

The messages are built by tests/pec_kit.py in the shapes of the real ones (the
corpus README); signatures are checked in tests/test_smime.py.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.mail.pec import (
    MAX_DATICERT_BYTES,
    RECEIPT_TYPES,
    Daticert,
    PecFacts,
    PecKind,
    SignedPart,
    Unreadable,
    canonical,
    parse_daticert,
    postacert,
    read_pec,
    signed_part,
)
from tests import hostile, pec_kit
from tests.pec_kit import DATE, HELPDESK, PROVIDER, RECEIPT_SUBJECTS, SENDER, Pec

HANG_GUARD = 20.0

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE postacert [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<postacert tipo="posta-certificata" errore="nessuno"><intestazione><mittente>&f;</mittente></intestazione></postacert>
"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE postacert [<!ENTITY who SYSTEM "file:///etc/passwd">]>
<postacert tipo="posta-certificata" errore="nessuno">
<intestazione><mittente>&who;</mittente></intestazione></postacert>
"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE postacert SYSTEM "http://attacker.example/daticert.dtd">
<postacert tipo="posta-certificata" errore="nessuno">
<intestazione><mittente>referente.tecnico@pec.ateneo.example.it</mittente></intestazione></postacert>
"""


def read(raw: bytes) -> PecFacts:
    facts = read_pec(raw)
    assert facts is not None, "read as ordinary mail"
    return facts


def guarded(raw: bytes) -> PecFacts | None:
    """read_pec in a daemon thread, so that a hang fails the test instead of the suite."""
    box: list[PecFacts | None] = []
    worker = threading.Thread(target=lambda: box.append(read_pec(raw)), daemon=True)
    worker.start()
    worker.join(HANG_GUARD)
    assert not worker.is_alive(), "read_pec did not return"
    assert box, "read_pec raised"
    return box[0]


# --------------------------------------------------------------------------
# Ordinary mail


def test_ordinary_mail_is_not_pec() -> None:
    assert read_pec(hostile.message()) is None


def test_a_pec_subject_alone_does_not_make_pec() -> None:
    assert read_pec(hostile.message(subject="POSTA CERTIFICATA: Richiesta reset password")) is None


def test_x_riferimento_message_id_alone_marks_no_kind() -> None:
    raw = hostile.message(headers=(("X-Riferimento-Message-ID", "<a@b.example>"),))
    assert read_pec(raw) is None


# --------------------------------------------------------------------------
# Envelopes


def test_envelope_is_read_with_its_certified_sender_candidate() -> None:
    facts = read(pec_kit.build(Pec()))
    assert facts.kind is PecKind.ENVELOPE
    assert facts.receipt_type is None
    assert facts.provider == PROVIDER
    assert facts.envelope_from == f"posta-certificata@{PROVIDER}"
    assert facts.refers_to == "<orig.20250314.1@pec.ateneo.example.it>"
    assert facts.per_conto_di == SENDER
    assert facts.inner_from is not None
    assert (facts.inner_from.name, facts.inner_from.addr) == ("Referente Tecnico", SENDER)
    assert facts.certified_sender_candidate == SENDER
    assert facts.reply_to == SENDER
    assert facts.envelope_date == DATE
    assert facts.envelope_date is not None and facts.envelope_date.utcoffset() is not None
    assert facts.original_subject == "Richiesta reset password casella"
    assert facts.defects == ()


def test_daticert_fields_of_an_envelope() -> None:
    daticert = read(pec_kit.build(Pec())).daticert
    assert isinstance(daticert, Daticert)
    assert (daticert.tipo, daticert.errore, daticert.mittente) == ("posta-certificata", "nessuno", SENDER)
    assert [(r.addr, r.tipo) for r in daticert.destinatari] == [(HELPDESK, "certificato")]
    assert (daticert.risposte, daticert.oggetto) == (SENDER, "Richiesta reset password casella")
    assert daticert.gestore_emittente == f"Gestore di prova S.p.A. ({PROVIDER})"
    assert daticert.data == datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
    assert daticert.identificativo == f"opec21.20250314103000.1.1@{PROVIDER}"
    assert daticert.msgid == "<orig.20250314.1@pec.ateneo.example.it>"
    assert (daticert.ricevuta, daticert.consegna, daticert.errore_esteso) == ("completa", "", "")


def test_envelope_unwraps_to_the_original_message() -> None:
    pec = Pec()
    assert postacert(pec_kit.build(pec)) == pec_kit.inner_message(pec)


def test_envelope_stored_with_lf_line_ends_reads_the_same() -> None:
    raw = pec_kit.build(Pec())
    facts = read(pec_kit.as_lf(raw))
    assert facts == read(raw)
    assert postacert(pec_kit.as_lf(raw)) == pec_kit.as_lf(pec_kit.inner_message(Pec()))


def test_an_envelope_without_daticert_has_no_certified_sender() -> None:
    facts = read(pec_kit.build(Pec(with_daticert=False)))
    assert facts.kind is PecKind.ENVELOPE
    assert facts.daticert is None
    assert facts.certified_sender_candidate is None
    assert facts.per_conto_di == SENDER
    assert facts.envelope_date == DATE  # the envelope's Date
    assert "daticert-missing" in facts.defects


def test_agreement_on_the_sender_is_case_insensitive() -> None:
    pec = Pec(per_conto_di=SENDER.upper(), inner_from=f"Referente <{SENDER.title()}>")
    assert read(pec_kit.build(pec)).certified_sender_candidate == SENDER


def test_mittente_disagreeing_with_the_inner_from_gives_no_certified_sender() -> None:
    facts = read(pec_kit.build(Pec(inner_from="Mario Rossi <mario.rossi@pec.altro.example.it>")))
    assert facts.certified_sender_candidate is None
    assert "sender-disagrees" in facts.defects
    assert facts.inner_from is not None and facts.inner_from.addr == "mario.rossi@pec.altro.example.it"


def test_per_conto_di_disagreeing_gives_no_certified_sender() -> None:
    facts = read(pec_kit.build(Pec(per_conto_di="someone.else@pec.altro.example.it")))
    assert facts.certified_sender_candidate is None
    assert facts.per_conto_di == "someone.else@pec.altro.example.it"


def test_an_ambiguous_inner_from_gives_no_certified_sender() -> None:
    facts = read(pec_kit.build(Pec(inner_from=f'"{SENDER}" <mario.rossi@pec.altro.example.it>')))
    assert facts.inner_from is None
    assert facts.certified_sender_candidate is None


def test_reply_goes_to_risposte() -> None:
    facts = read(pec_kit.build(Pec(reply_to="segreteria@pec.ateneo.example.it")))
    assert facts.reply_to == "segreteria@pec.ateneo.example.it"
    assert facts.certified_sender_candidate == SENDER


def test_reply_never_goes_to_the_provider() -> None:
    daticert = pec_kit.daticert_xml(Pec()).replace(
        f"<risposte>{SENDER}</risposte>".encode(), f"<risposte>posta-certificata@{PROVIDER}</risposte>".encode()
    )
    pec = Pec(daticert=daticert, reply_to=f"posta-certificata@{PROVIDER}")
    assert read(pec_kit.build(pec)).reply_to == SENDER


# --------------------------------------------------------------------------
# Anomalies and receipts


def test_anomaly_envelope_is_unwrapped_but_certifies_nobody() -> None:
    facts = read(pec_kit.build(Pec(kind="anomaly")))
    assert facts.kind is PecKind.ANOMALY
    assert facts.certified_sender_candidate is None
    assert facts.inner_from is not None and facts.inner_from.addr == SENDER
    assert facts.reply_to == SENDER
    assert facts.original_subject == "Richiesta reset password casella"
    assert facts.envelope_date == DATE  # no daticert: the envelope's Date
    assert "daticert-missing" in facts.defects


@pytest.mark.parametrize("receipt_type", sorted(RECEIPT_SUBJECTS))
def test_every_receipt_type_is_read(receipt_type: str) -> None:
    facts = read(pec_kit.build(Pec(kind="receipt", receipt_type=receipt_type, sender=HELPDESK, recipient=SENDER)))
    assert facts.kind is PecKind.RECEIPT
    assert facts.receipt_type == receipt_type
    assert facts.provider == PROVIDER
    assert facts.refers_to == "<orig.20250314.1@pec.ateneo.example.it>"
    assert facts.certified_sender_candidate is None
    assert facts.reply_to is None
    assert facts.original_subject == "Richiesta reset password casella"
    assert facts.daticert is not None and facts.daticert.tipo == receipt_type


def test_receipt_types_are_those_of_the_technical_rules() -> None:
    assert set(RECEIPT_SUBJECTS) == RECEIPT_TYPES


def test_non_delivery_notice_says_where_and_why() -> None:
    pec = Pec(kind="receipt", receipt_type="errore-consegna", sender=HELPDESK, recipient=SENDER)
    daticert = read(pec_kit.build(pec)).daticert
    assert daticert is not None
    assert (daticert.errore, daticert.consegna) == ("no-dest", SENDER)
    assert daticert.errore_esteso == "5.1.1 - Gestore di prova - indirizzo non valido"


def test_a_complete_delivery_receipt_carries_the_message_but_certifies_nobody() -> None:
    pec = Pec(kind="receipt", receipt_type="avvenuta-consegna")
    facts = read(pec_kit.build(pec))
    assert postacert(pec_kit.build(pec)) == pec_kit.inner_message(pec)
    assert facts.inner_from is not None
    assert facts.certified_sender_candidate is None


def test_receipt_refers_to_daticert_msgid_without_the_header() -> None:
    raw = pec_kit.build(Pec(kind="receipt", header_names={"X-Riferimento-Message-ID": "X-Commento"}))
    assert read(raw).refers_to == "<orig.20250314.1@pec.ateneo.example.it>"


@pytest.mark.parametrize(("pec", "kind"), [
    (Pec(kind="receipt", header_names={"X-Ricevuta": "x-ricevuta"}), PecKind.RECEIPT),
    (Pec(kind="receipt", header_names={"X-Ricevuta": "X-RICEVUTA"}), PecKind.RECEIPT),
    (Pec(header_names={"X-Trasporto": "x-trasporto", "X-TipoRicevuta": "X-Tiporicevuta"}), PecKind.ENVELOPE),
    (Pec(kind="anomaly", header_names={"X-Trasporto": "X-TRASPORTO"}), PecKind.ANOMALY),
])
def test_header_names_are_case_insensitive(pec: Pec, kind: PecKind) -> None:
    facts = read(pec_kit.build(pec))
    assert facts.kind is kind
    assert facts.receipt_type == ("accettazione" if kind is PecKind.RECEIPT else None)


def test_x_riferimento_message_id_is_not_a_receipt_marker() -> None:
    facts = read(pec_kit.build(Pec()))
    assert facts.kind is PecKind.ENVELOPE
    assert facts.refers_to is not None


def test_kind_from_daticert_when_the_markers_are_missing() -> None:
    raw = pec_kit.build(Pec(header_names={"X-Trasporto": "X-Commento"}))
    facts = read(raw)
    assert facts.kind is PecKind.ENVELOPE
    assert "kind-from-daticert" in facts.defects


def test_kind_from_the_subject_only_as_a_last_resort() -> None:
    pec = Pec(kind="receipt", receipt_type="errore-consegna", with_daticert=False,
              header_names={"X-Ricevuta": "X-Commento"})
    facts = read(pec_kit.build(pec))
    assert (facts.kind, facts.receipt_type) == (PecKind.RECEIPT, "errore-consegna")
    assert "kind-from-subject" in facts.defects


def test_an_unknown_transport_is_an_anomaly() -> None:
    raw = pec_kit.build(Pec(with_daticert=False, header_names={"Subject": "X-Commento"})).replace(
        b"X-Trasporto: posta-certificata", b"X-Trasporto: altro"
    )
    facts = read(raw)
    assert facts.kind is PecKind.ANOMALY
    assert facts.certified_sender_candidate is None


def test_header_markers_win_over_daticert() -> None:
    daticert = pec_kit.daticert_xml(Pec(kind="receipt", receipt_type="accettazione"))
    facts = read(pec_kit.build(Pec(daticert=daticert)))
    assert facts.kind is PecKind.ENVELOPE
    assert facts.certified_sender_candidate is None
    assert "daticert-tipo-disagrees: accettazione" in facts.defects


# --------------------------------------------------------------------------
# The signed part


def test_signed_part_is_the_canonical_signed_entity_and_the_der_signature() -> None:
    pec = Pec()
    found = signed_part(pec_kit.as_lf(pec_kit.build(pec)))
    assert isinstance(found, SignedPart)
    assert found.content == pec_kit.signed_content(pec)
    assert found.signature.startswith(b"\x30")  # a DER SEQUENCE


def test_unsigned_pec_has_no_signed_part_but_is_read() -> None:
    raw = pec_kit.unsigned(Pec())
    assert signed_part(raw) is None
    facts = read(raw)
    assert facts.kind is PecKind.ENVELOPE
    assert facts.certified_sender_candidate == SENDER  # a candidate only: the signature is missing
    assert "signature-missing" in facts.defects


def test_a_mailing_list_wrapper_is_looked_through() -> None:
    pec = Pec()
    raw = pec_kit.rewrapped(pec_kit.build(pec))
    assert read(raw).certified_sender_candidate == SENDER
    assert postacert(raw) == pec_kit.inner_message(pec)
    found = signed_part(raw)
    assert isinstance(found, SignedPart) and found.content == pec_kit.signed_content(pec)


def test_only_what_the_signature_covers_is_unwrapped() -> None:
    pec = Pec()
    raw = pec_kit.rewrapped(pec_kit.build(pec))
    forged = replace(pec, sender="intruso@pec.altro.example.it", subject="Disattivazione casella")
    extra = b'Content-Type: message/rfc822; name="postacert.eml"\r\n\r\n' + pec_kit.inner_message(forged)
    raw = raw.replace(b"--list-wrap--", b"--list-wrap\r\n" + extra + b"\r\n--list-wrap--")
    assert postacert(raw) == pec_kit.inner_message(pec)
    assert read(raw).certified_sender_candidate == SENDER


def test_two_postacert_parts_give_no_certified_sender() -> None:
    pec = Pec()
    inner = pec_kit.inner_message(pec)
    part = b'Content-Type: message/rfc822; name="postacert.eml"\r\n\r\n' + inner
    content = pec_kit.signed_content(pec).replace(b"\r\n------=_mixed_7F3A--", b"\r\n------=_mixed_7F3A\r\n" + part
                                                  + b"\r\n------=_mixed_7F3A--")
    raw = pec_kit.signed_message(pec_kit.envelope_headers(pec), content, b"0")
    facts = read(raw)
    assert "postacert-repeated" in facts.defects
    assert facts.certified_sender_candidate is None


def test_an_oversized_signature_is_unreadable() -> None:
    pec = Pec()
    raw = pec_kit.signed_message(pec_kit.envelope_headers(pec), pec_kit.signed_content(pec), b"\x30" * 400_000)
    assert signed_part(raw) == Unreadable("signature too large")


def test_canonical_form_has_crlf_line_ends() -> None:
    assert canonical(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"


# --------------------------------------------------------------------------
# Hostile daticert.xml and structure


@pytest.mark.parametrize(("xml", "reason"), [
    (BILLION_LAUGHS, "daticert.xml refused: EntitiesForbidden"),
    (EXTERNAL_ENTITY, "daticert.xml refused: EntitiesForbidden"),
    (b"<postacert tipo='posta-certificata'><intestazione>", "daticert.xml malformed: ParseError"),
    (b"<html><body>ciao</body></html>", "daticert.xml root is not postacert"),
    (b" " * (MAX_DATICERT_BYTES + 1), "daticert.xml too large"),
])
def test_hostile_daticert_is_refused_safely(xml: bytes, reason: str) -> None:
    assert parse_daticert(xml) == Unreadable(reason)
    facts = guarded(pec_kit.build(Pec(daticert=xml)))
    assert facts is not None
    assert facts.kind is PecKind.ENVELOPE
    assert facts.daticert is None
    assert f"daticert-unreadable: {reason}" in facts.defects
    assert facts.certified_sender_candidate is None
    assert facts.envelope_date == DATE  # from the Date header


def test_an_external_dtd_is_never_fetched() -> None:
    daticert = parse_daticert(EXTERNAL_DTD)
    assert isinstance(daticert, Daticert)
    assert daticert.mittente == SENDER


def test_daticert_with_a_namespace_and_without_a_zone() -> None:
    xml = pec_kit.daticert_xml(Pec()).replace(
        b'<postacert tipo', b'<postacert xmlns="http://example.it/pec" tipo'
    ).replace(b' zona="+0100"', b"")
    daticert = parse_daticert(xml)
    assert isinstance(daticert, Daticert)
    assert daticert.mittente == SENDER
    assert daticert.data is None


def test_ten_thousand_nested_multiparts_are_read_in_bounded_work() -> None:
    depth = 10_000
    level = b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n'
    body = b"".join(level % (i, i + 1) for i in range(depth))
    raw = (
        b"From: posta-certificata@pec.provider.example\r\nX-Ricevuta: accettazione\r\n"
        b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n' + body
    )
    facts = guarded(raw)
    assert facts is not None and facts.kind is PecKind.RECEIPT


def test_a_flood_of_parts_is_read_in_bounded_work() -> None:
    parts = b"".join(b"--f\r\nContent-Type: message/rfc822\r\n\r\nFrom: a@b.it\r\n\r\nx\r\n" for _ in range(50_000))
    raw = (
        b'From: "Per conto di: a@b.it" <posta-certificata@pec.provider.example>\r\nX-Trasporto: errore\r\n'
        b'Content-Type: multipart/mixed; boundary="f"\r\n\r\n' + parts + b"--f--\r\n"
    )
    facts = guarded(raw)
    assert facts is not None and facts.kind is PecKind.ANOMALY


def test_garbage_under_pec_headers_is_read_without_a_crash() -> None:
    raw = b"X-Trasporto: posta-certificata\r\nFrom: \x00\xff<<>>\r\nContent-Type: multipart/signed\r\n\r\n\xff" * 3
    facts = guarded(raw)
    assert facts is not None
    assert facts.provider == ""
    assert facts.certified_sender_candidate is None


SIGNED_ENVELOPE = pec_kit.build(Pec())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(SIGNED_ENVELOPE)), st.integers(0, 64), st.binary(max_size=64)),
                max_size=8))
def test_a_mangled_envelope_never_makes_the_reader_raise(edits: list[tuple[int, int, bytes]]) -> None:
    raw = SIGNED_ENVELOPE
    for at, cut, insert in edits:
        raw = raw[:at] + insert + raw[at + cut:]
    facts = read_pec(raw)
    postacert(raw)
    signed_part(raw)
    if facts is not None and facts.certified_sender_candidate is not None:
        assert facts.kind is PecKind.ENVELOPE
        assert facts.certified_sender_candidate.lower() == (facts.per_conto_di or "").lower()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_body_under_pec_headers_is_read(body: bytes) -> None:
    raw = b'X-Trasporto: posta-certificata\r\nContent-Type: multipart/signed; boundary="b"\r\n\r\n' + body
    assert read_pec(raw) is not None
    postacert(raw)
    signed_part(raw)


def test_a_reader_fault_is_a_value_that_certifies_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise IndexError("fault")

    monkeypatch.setattr("maild.mail.pec._read_daticert", broken)
    facts = read(pec_kit.build(Pec(kind="receipt")))
    assert (facts.kind, facts.defects) == (PecKind.RECEIPT, ("pec-reader-fault: IndexError",))
    facts = read(pec_kit.build(Pec()))
    assert facts.kind is PecKind.ANOMALY
    assert facts.certified_sender_candidate is None
