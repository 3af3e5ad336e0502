"""PEC through the pipeline: receipts ignored, envelopes unwrapped, privileged requests authorized only by PEC.

Each case of the issue's first "Done when" bullet gets the decision and the
reason: valid; untrusted CA; tampered; expired signer at the message date;
signer not the envelope sender; certified sender not in ``pec``; mittente not
the inner From; no signature. Messages are built and signed by ``pec_kit``'s
test CA and checked by the real openssl verifier; a fake verifier shows when
no check is made at all.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from maild.cli.dryrun import disposition_row
from maild.errors import ConfigError
from maild.mail.pec import SignedPart
from maild.mail.smime import OpenSSLVerifier, SignatureCheck, SignatureStatus
from maild.pipeline import Triager
from maild.records import Category, Decision, Disposition
from maild.responder import Responder
from maild.settings import DEFAULT_TEMPLATES
from tests import pec_kit
from tests.factories import PASS, REFERENTE, settings
from tests.pec_kit import HELPDESK, PROVIDER, SENDER, Pec

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
ADMINISTRATION = {
    "name": "Ateneo", "referente": REFERENTE, "delegates": ["delegato.sistemi@ateneo.example.it"],
    "domains": ["ateneo.example.it"], "pec": [SENDER, "delegato.sistemi@pec.ateneo.example.it"],
}
QUESTION = "Buongiorno,\r\nvorrei sapere come configurare la casella sul telefono.\r\n"


def config(ca_file: Path | None, **administration: Any) -> dict[str, Any]:
    pec: dict[str, Any] = {"addresses": [HELPDESK]}
    if ca_file is not None:
        pec["ca_file"] = str(ca_file)
    return {"administrations": [ADMINISTRATION | administration], "pec": pec}


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pec_kit.pki().write_root(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def triager(ca_file: Path) -> Triager:
    return Triager.from_settings(settings(**config(ca_file)))


def triage(triager: Triager, raw: bytes) -> Disposition:
    return triager.triage(raw, now=NOW)


def auth_reasons(d: Disposition) -> list[str]:
    return [r for r in d.reasons if r.startswith("auth:")]


# --------------------------------------------------------------------------
# The eight cases


def test_valid_envelope_authorizes_the_certified_sender(triager: Triager) -> None:
    d = triage(triager, pec_kit.build(Pec()))
    assert (d.category, d.decision) == (Category.PASSWORD_RESET, Decision.ACCEPTED)
    assert auth_reasons(d) == [
        "auth: PEC signature valid at 2025-03-14T10:30:00+01:00",
        f"auth: certified sender {SENDER} is a PEC address of Ateneo",
    ]
    assert d.message.from_addresses[0].addr == SENDER
    assert d.message.from_addresses[0].name == "Referente Tecnico"
    assert d.pec is not None
    assert (d.pec.kind, d.pec.signature, d.pec.certified_sender) == ("envelope", "valid", SENDER)


def test_untrusted_ca_is_refused(triager: Triager) -> None:
    rogue = pec_kit.pki("rogue")
    d = triage(triager, pec_kit.build(Pec(), signer=rogue.provider(), chain=(rogue.intermediate,)))
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == ["auth: signer not trusted: unable to get local issuer certificate"]
    assert d.pec is not None and (d.pec.signature, d.pec.certified_sender) == ("untrusted", None)


def test_tampered_envelope_is_refused(triager: Triager) -> None:
    raw = pec_kit.build(Pec()).replace(b"mario.rossi@ateneo", b"marco.rossi@ateneo")
    d = triage(triager, raw)
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == ["auth: PEC signature does not verify"]
    assert d.pec is not None and d.pec.signature == "invalid"


def test_signer_expired_at_the_message_date_is_refused(triager: Triager) -> None:
    expired = pec_kit.pki().provider(not_before=datetime(2020, 1, 1, tzinfo=UTC),
                                     not_after=datetime(2023, 1, 1, tzinfo=UTC))
    d = triage(triager, pec_kit.build(Pec(), signer=expired))
    assert d.decision is Decision.REJECTED
    [reason] = auth_reasons(d)
    assert reason.startswith("auth: signer not valid at the envelope date 2025-03-14T10:30:00+01:00:")
    assert d.pec is not None and d.pec.signature == "untrusted"


def test_signer_not_the_envelope_sender_is_refused(triager: Triager) -> None:
    other = pec_kit.pki().provider(f"posta-certificata@{pec_kit.OTHER_PROVIDER}")
    d = triage(triager, pec_kit.build(Pec(), signer=other))
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == [
        f"auth: signer posta-certificata@{pec_kit.OTHER_PROVIDER} is not the envelope sender"]


def test_certified_sender_not_in_pec_is_refused(ca_file: Path) -> None:
    narrow = Triager.from_settings(settings(**config(ca_file, pec=["delegato.sistemi@pec.ateneo.example.it"])))
    d = triage(narrow, pec_kit.build(Pec()))
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == [f"auth: certified sender {SENDER} not authorized: not a PEC address of Ateneo"]
    assert d.pec is not None and (d.pec.signature, d.pec.certified_sender) == ("valid", SENDER)


def test_mittente_not_the_inner_from_certifies_nobody(triager: Triager) -> None:
    raw = pec_kit.build(Pec(inner_from="Mario Rossi <mario.rossi@pec.ateneo.example.it>"))
    d = triage(triager, raw)
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == [
        "auth: no certified sender: daticert mittente, the envelope's Per conto di and the inner From do not agree"]
    assert d.message.from_addresses[0].addr == "mario.rossi@pec.ateneo.example.it"
    assert d.pec is not None and (d.pec.signature, d.pec.certified_sender) == ("valid", None)


def test_no_signature_with_pec_headers_is_refused(triager: Triager) -> None:
    d = triage(triager, pec_kit.unsigned(Pec()))
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == ["auth: PEC message is not signed"]
    assert d.pec is not None and d.pec.signature == "missing"


# --------------------------------------------------------------------------
# Without ca_file, anomalies, Authentication-Results, replays


def test_without_ca_file_no_envelope_authorizes() -> None:
    d = triage(Triager.from_settings(settings(**config(None))), pec_kit.build(Pec()))
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == [
        "auth: PEC signature not checked: no [pec] ca_file; no PEC envelope authorizes anything without it"]
    assert d.pec is not None and d.pec.signature == "not_checked"


def test_an_anomaly_envelope_authorizes_nothing(triager: Triager) -> None:
    d = triage(triager, pec_kit.build(Pec(kind="anomaly")))
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == ["auth: a PEC anomaly envelope carries uncertified mail: it authorizes nothing"]
    assert d.pec is not None and (d.pec.kind, d.pec.signature) == ("anomaly", "not_checked")


def test_outer_authentication_results_never_authorize_the_inner_sender(ca_file: Path) -> None:
    raw = b"Authentication-Results: " + PASS.encode() + b"\r\n" + pec_kit.unsigned(Pec())
    d = triage(Triager.from_settings(settings(**config(ca_file))), raw)
    assert d.decision is Decision.REJECTED
    assert d.message.auth_results == ()


def test_an_envelope_sent_to_someone_else_cannot_be_replayed(triager: Triager) -> None:
    d = triage(triager, pec_kit.build(Pec(recipient="ufficio@pec.altro-ente.example.it")))
    assert d.decision is Decision.REJECTED
    assert auth_reasons(d) == [
        "auth: PEC envelope not addressed to the help desk (daticert destinatari: ufficio@pec.altro-ente.example.it):"
        " a certified message cannot be replayed here"]


def test_a_missing_ca_file_is_a_configuration_fault(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pec\.ca_file"):
        settings(**config(tmp_path / "absent.pem"))


# --------------------------------------------------------------------------
# Unwrapping and receipts


class _Counting:
    """A verifier that must not be asked: ordinary mail and non-privileged PEC need no trust decision."""

    def __init__(self) -> None:
        self.calls = 0

    def verify(self, signed: SignedPart, at: datetime, sender: str) -> SignatureCheck:
        self.calls += 1
        return SignatureCheck(SignatureStatus.INVALID, "PEC signature does not verify")


def test_a_non_privileged_envelope_is_unwrapped_without_a_signature_check(triager: Triager) -> None:
    fake = _Counting()
    quiet = dataclasses.replace(triager, verifier=fake)
    d = triage(quiet, pec_kit.build(Pec(subject="Configurazione casella", body=QUESTION, reply_to=None)))
    assert fake.calls == 0
    assert (d.category, d.decision) == (Category.OTHER, Decision.ACCEPTED)
    assert d.message.subject == "Configurazione casella"
    assert d.message.message_id == "<orig.20250314.1@pec.ateneo.example.it>"
    assert d.message.from_addresses[0].addr == SENDER
    assert "Messaggio di posta certificata" not in d.message.body_text
    assert d.pec is not None and (d.pec.signature, d.pec.certified_sender, d.pec.provider) == (
        "not_checked", None, PROVIDER)


def test_a_privileged_envelope_asks_the_verifier(triager: Triager) -> None:
    fake = _Counting()
    d = triage(dataclasses.replace(triager, verifier=fake), pec_kit.build(Pec()))
    assert fake.calls == 1
    assert d.decision is Decision.REJECTED


def test_the_acknowledgment_goes_to_risposte_with_the_inner_name_and_subject(triager: Triager) -> None:
    answer = "segreteria@pec.ateneo.example.it"
    inner = f"Guidi Alberto - Referente Tecnico <{Pec().sender}>"
    d = triage(triager, pec_kit.build(Pec(subject="Configurazione casella", body=QUESTION, reply_to=answer,
                                          inner_from=inner)))
    ack = Responder(DEFAULT_TEMPLATES, triager.settings.helpdesk).acknowledgment(d, "HD-2025-000001", "<a@b.c>", NOW)
    assert ack.recipients == (answer,)
    text = ack.data.decode()
    assert "Subject: Re: Configurazione casella [HD-2025-000001]\r\n" in text
    assert "In-Reply-To: <orig.20250314.1@pec.ateneo.example.it>" in text
    assert "Gentile Guidi Alberto," in text and "posta-certificata@" not in text


@pytest.mark.parametrize("receipt_type", sorted(pec_kit.RECEIPT_SUBJECTS))
def test_every_receipt_is_ignored_signed_or_not(receipt_type: str, triager: Triager) -> None:
    pec = Pec(kind="receipt", receipt_type=receipt_type, sender=HELPDESK, recipient=SENDER)
    for raw in (pec_kit.build(pec), pec_kit.unsigned(pec)):
        d = triage(triager, raw)
        assert d.decision is Decision.IGNORED and d.take_in is None
        assert f"screen: PEC receipt (X-Ricevuta: {receipt_type}) from posta-certificata@{PROVIDER}: " \
               "recorded, never answered" in d.reasons
        assert d.pec is not None and (d.pec.kind, d.pec.receipt_type) == ("receipt", receipt_type)


def test_a_non_delivery_notice_says_why(triager: Triager) -> None:
    pec = Pec(kind="receipt", receipt_type="errore-consegna", sender=HELPDESK, recipient=SENDER)
    d = triage(triager, pec_kit.build(pec))
    assert d.pec is not None
    assert (d.pec.delivery, d.pec.delivered) == ("not delivered: 5.1.1 - Gestore di prova - indirizzo non valido",
                                                 False)
    assert d.pec.refers_to == pec.original_id


def test_an_automatic_message_inside_an_envelope_is_screened(triager: Triager) -> None:
    raw = pec_kit.build(Pec(subject="Risposta automatica: fuori sede", body=QUESTION))
    raw = raw.replace(b"MIME-Version: 1.0\r\nContent-Type: text/plain",
                      b"Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: text/plain", 1)
    d = triage(triager, raw)
    assert d.decision is Decision.IGNORED
    assert "screen: Auto-Submitted: auto-replied" in d.reasons


def test_an_e_invoicing_notification_inside_an_envelope_is_screened(triager: Triager) -> None:
    """The e-invoicing system (SdI) writes through PEC without Auto-Submitted: its mailbox gives it away."""
    raw = pec_kit.build(Pec(sender="sdi03@pec.fatturapa.it", subject="Ricevuta di consegna 6782414", body=QUESTION))
    d = triage(triager, raw)
    assert d.decision is Decision.IGNORED
    assert any("e-invoicing system" in r for r in d.reasons)


# --------------------------------------------------------------------------
# maild triage --json


def test_triage_json_pec_key(triager: Triager) -> None:
    row = disposition_row("x.eml", triage(triager, pec_kit.build(Pec())))
    assert row["from"] == SENDER
    assert row["pec"] == {"kind": "envelope", "receipt_type": None, "signature": "valid",
                          "certified_sender": SENDER, "provider": PROVIDER,
                          "refers_to": "<orig.20250314.1@pec.ateneo.example.it>"}
    ordinary = disposition_row("y.eml", triager.triage(b"From: a@ateneo.example.it\r\nSubject: x\r\n\r\nciao\r\n",
                                                       now=NOW))
    assert ordinary["pec"] is None


def test_triage_command_prints_the_pec_key(tmp_path: Path, ca_file: Path) -> None:
    receipt = tmp_path / "receipt.eml"
    receipt.write_bytes(pec_kit.build(Pec(kind="receipt", receipt_type="avvenuta-consegna", sender=HELPDESK,
                                          recipient=SENDER)))
    toml = tmp_path / "maild.toml"
    toml.write_text(
        '[helpdesk]\naddress = "helpdesk-posta@servizi.example.it"\nname = "HD"\n'
        'trusted_authserv_ids = ["mx.servizi.example.it"]\n'
        f'[[administrations]]\nname = "Ateneo"\nreferente = "{REFERENTE}"\npec = ["{SENDER}"]\n'
        f'[pec]\nca_file = "{ca_file}"\naddresses = ["{HELPDESK}"]\n')
    done = subprocess.run([sys.executable, "-m", "maild.cli", "triage", "--json", "--config", str(toml), str(receipt)],
                          capture_output=True, text=True, check=True)
    row = json.loads(done.stdout)
    assert row["decision"] == "ignored"
    assert row["pec"] == {"kind": "receipt", "receipt_type": "avvenuta-consegna", "signature": "not_checked",
                          "certified_sender": None, "provider": PROVIDER,
                          "refers_to": "<orig.20250314.1@pec.ateneo.example.it>"}


def test_the_real_verifier_is_built_from_settings(triager: Triager, ca_file: Path) -> None:
    assert isinstance(triager.verifier, OpenSSLVerifier)
    assert triager.verifier.ca_file == ca_file.resolve()
