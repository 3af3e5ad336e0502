"""The provider's signature: the real openssl verifier on messages signed by a test CA, and the pure rules.

Each case is one the issue names: valid; signed by an untrusted CA; tampered
after signing; expired signer at the message date (and the same signer at a
date it was valid); signer not the envelope sender; no signature; a garbled one.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from maild.errors import ConfigError
from maild.mail.pec import PecFacts, SignedPart, read_pec, signed_part
from maild.mail.smime import (
    Certificate,
    CmsOutcome,
    OpenSSLVerifier,
    SignatureCheck,
    SignatureStatus,
    carried_certificates,
    check_signature,
    judge,
    signer_is_sender,
)
from tests import pec_kit
from tests.pec_kit import DATE, HELPDESK, OTHER_PROVIDER, PROVIDER, RECEIPT_SUBJECTS, SENDER, Pec

VALID = SignatureStatus.VALID
INVALID = SignatureStatus.INVALID
UNTRUSTED = SignatureStatus.UNTRUSTED


@pytest.fixture(scope="module")
def verifier(tmp_path_factory: pytest.TempPathFactory) -> OpenSSLVerifier:
    """Trusts the test root only, as an operator trusting AgID CA1's public root would."""
    return OpenSSLVerifier(pec_kit.pki().write_root(tmp_path_factory.mktemp("ca")))


def facts_of(raw: bytes) -> PecFacts:
    facts = read_pec(raw)
    assert facts is not None
    return facts


def check(raw: bytes, verifier: OpenSSLVerifier) -> SignatureCheck:
    return check_signature(raw, facts_of(raw), verifier)


def sha256(certificate: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in certificate.fingerprint(hashes.SHA256()))


# --------------------------------------------------------------------------
# The real verifier


def test_valid_envelope(verifier: OpenSSLVerifier) -> None:
    result = check(pec_kit.build(Pec()), verifier)
    assert (result.status, result.reason) == (VALID, "PEC signature valid at 2025-03-14T10:30:00+01:00")
    provider = pec_kit.pki().provider()
    assert result.signer is not None
    assert result.signer.emails == (f"posta-certificata@{PROVIDER}",)
    assert result.signer.sha256 == sha256(provider.certificate)
    assert result.signer.subject == f"C=IT, O=Gestore di prova S.p.A., CN=Posta Certificata {PROVIDER}"
    assert result.signer.issuer == "C=IT, O=Agenzia per l'Italia Digitale, CN=AgID CA1 di prova"
    assert result.signer.not_after == datetime(2027, 1, 1, tzinfo=UTC)
    assert not result.signer.ca


def test_the_signature_carries_the_signer_and_its_intermediate(verifier: OpenSSLVerifier) -> None:
    result = check(pec_kit.build(Pec()), verifier)
    intermediate = pec_kit.pki().intermediate.certificate
    assert [c.sha256 for c in result.certificates if c.ca] == [sha256(intermediate)]
    pinned = x509.load_pem_x509_certificate(next(c for c in result.certificates if c.ca).pem.encode())
    assert pinned == intermediate


@pytest.mark.parametrize("receipt_type", sorted(RECEIPT_SUBJECTS))
def test_every_receipt_type_verifies(receipt_type: str, verifier: OpenSSLVerifier) -> None:
    raw = pec_kit.build(Pec(kind="receipt", receipt_type=receipt_type, sender=HELPDESK, recipient=SENDER))
    assert check(raw, verifier).status is VALID


def test_anomaly_envelope_verifies(verifier: OpenSSLVerifier) -> None:
    assert check(pec_kit.build(Pec(kind="anomaly")), verifier).status is VALID


def test_stored_with_lf_line_ends_still_verifies(verifier: OpenSSLVerifier) -> None:
    assert check(pec_kit.as_lf(pec_kit.build(Pec())), verifier).status is VALID


def test_wrapped_by_a_mailing_list_still_verifies(verifier: OpenSSLVerifier) -> None:
    assert check(pec_kit.rewrapped(pec_kit.build(Pec())), verifier).status is VALID


def test_an_intermediate_can_be_pinned_alone(tmp_path: Path) -> None:
    ca_file = tmp_path / "agid-ca1.pem"
    ca_file.write_bytes(pec_kit.pki().intermediate.pem)
    assert check(pec_kit.build(Pec()), OpenSSLVerifier(ca_file)).status is VALID


def test_signed_by_an_untrusted_ca(verifier: OpenSSLVerifier) -> None:
    rogue = pec_kit.pki("rogue")  # the same names as the trusted CAs, other keys
    raw = pec_kit.build(Pec(), signer=rogue.provider(), chain=(rogue.intermediate,))
    result = check(raw, verifier)
    assert (result.status, result.reason) == (UNTRUSTED, "signer not trusted: unable to get local issuer certificate")
    assert result.signer is not None and result.signer.sha256 == sha256(rogue.provider().certificate)


def test_only_ca_file_is_trusted_not_the_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "root.pem").write_bytes(pec_kit.pki().root.pem)
    subprocess.run(["openssl", "rehash", str(store)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_DIR", str(store))  # openssl's default directory and store
    monkeypatch.setenv("SSL_CERT_FILE", str(store / "root.pem"))
    ca_file = tmp_path / "unrelated.pem"
    ca_file.write_bytes(pec_kit.pki("rogue").provider(f"posta-certificata@{OTHER_PROVIDER}").pem)
    result = check(pec_kit.build(Pec()), OpenSSLVerifier(ca_file))
    assert (result.status, result.reason) == (UNTRUSTED, "signer not trusted: unable to get local issuer certificate")


def test_tampered_after_signing(verifier: OpenSSLVerifier) -> None:
    raw = pec_kit.build(Pec()).replace(b"reset della password", b"reset della passw0rd")
    result = check(raw, verifier)
    assert (result.status, result.reason) == (INVALID, "PEC signature does not verify")
    assert result.signer is None


def test_tampered_and_untrusted_is_invalid(verifier: OpenSSLVerifier) -> None:
    rogue = pec_kit.pki("rogue")
    raw = pec_kit.build(Pec(), signer=rogue.provider(), chain=(rogue.intermediate,))
    raw = raw.replace(b"reset della password", b"reset della passw0rd")
    assert check(raw, verifier).status is INVALID


def test_unsigned_header_fields_are_not_covered(verifier: OpenSSLVerifier) -> None:
    raw = pec_kit.build(Pec()).replace(b"Subject: POSTA CERTIFICATA: Richiesta", b"Subject: POSTA CERTIFICATA: Altra")
    assert check(raw, verifier).status is VALID  # what is read from the signed part is what counts


def test_expired_signer_at_the_message_date(verifier: OpenSSLVerifier) -> None:
    expired = pec_kit.pki().provider(
        not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2023, 1, 1, tzinfo=UTC)
    )
    result = check(pec_kit.build(Pec(), signer=expired), verifier)
    assert result.status is UNTRUSTED
    assert result.reason == "signer not valid at the envelope date 2025-03-14T10:30:00+01:00: certificate has expired"


def test_the_same_signer_is_valid_at_a_date_it_was_valid(verifier: OpenSSLVerifier) -> None:
    expired = pec_kit.pki().provider(
        not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2023, 1, 1, tzinfo=UTC)
    )
    pec = pec_kit.with_date(Pec(), datetime(2022, 6, 1, 12, 0, tzinfo=pec_kit.ROME))
    assert check(pec_kit.build(pec, signer=expired), verifier).status is VALID


def test_signer_not_yet_valid_at_the_message_date(verifier: OpenSSLVerifier) -> None:
    future = pec_kit.pki().provider(
        not_before=datetime(2026, 1, 1, tzinfo=UTC), not_after=datetime(2029, 1, 1, tzinfo=UTC)
    )
    result = check(pec_kit.build(Pec(), signer=future), verifier)
    assert result.status is UNTRUSTED
    assert result.reason.endswith("certificate is not yet valid")


def test_signer_not_allowed_to_sign_mail(verifier: OpenSSLVerifier) -> None:
    server = pec_kit.pki().provider(usage=ExtendedKeyUsageOID.SERVER_AUTH)
    result = check(pec_kit.build(Pec(), signer=server), verifier)
    assert (result.status, result.reason) == (UNTRUSTED, "signer not trusted: unsuitable certificate purpose")


def test_signer_email_not_the_envelope_sender(verifier: OpenSSLVerifier) -> None:
    other = pec_kit.pki().provider(f"posta-certificata@{OTHER_PROVIDER}")
    result = check(pec_kit.build(Pec(), signer=other), verifier)
    assert result.status is UNTRUSTED
    assert result.reason == f"signer posta-certificata@{OTHER_PROVIDER} is not the envelope sender"


def test_no_signature_with_pec_headers_is_missing(verifier: OpenSSLVerifier) -> None:
    result = check(pec_kit.unsigned(Pec()), verifier)
    assert (result.status, result.reason) == (SignatureStatus.MISSING, "PEC message is not signed")


def test_garbage_signature_is_invalid(verifier: OpenSSLVerifier) -> None:
    pec = Pec()
    raw = pec_kit.signed_message(pec_kit.envelope_headers(pec), pec_kit.signed_content(pec), os.urandom(600))
    result = check(raw, verifier)
    assert (result.status, result.reason) == (INVALID, "PEC signature does not verify: unreadable signature")


def test_no_ca_file_means_not_checked() -> None:
    raw = pec_kit.build(Pec())
    result = check_signature(raw, facts_of(raw), None)
    assert result.status is SignatureStatus.NOT_CHECKED
    assert result.reason == "PEC signature not checked: no [pec] ca_file"


def test_no_envelope_date_is_untrusted(verifier: OpenSSLVerifier) -> None:
    raw = pec_kit.build(Pec())
    result = check_signature(raw, replace(facts_of(raw), envelope_date=None), verifier)
    assert result.status is UNTRUSTED


def test_carried_certificates_for_inspection() -> None:
    found = signed_part(pec_kit.build(Pec()))
    assert isinstance(found, SignedPart)
    certificates = carried_certificates(found.signature)
    trusted = pec_kit.pki()
    assert {c.sha256 for c in certificates} == {
        sha256(trusted.provider().certificate), sha256(trusted.intermediate.certificate)
    }


def test_a_slow_openssl_is_not_checked(tmp_path: Path) -> None:
    slow = tmp_path / "openssl"
    slow.write_text('#!/bin/sh\nif [ "$1" = cms ]; then sleep 5; fi\nexec openssl "$@"\n')
    slow.chmod(0o755)
    verifier = OpenSSLVerifier(pec_kit.pki().write_root(tmp_path), openssl=str(slow), timeout=1.0)
    result = check(pec_kit.build(Pec()), verifier)
    assert result.status is SignatureStatus.NOT_CHECKED
    assert result.reason == "PEC signature not checked: openssl took over 1 s"


def test_the_trusted_certificates_are_listed(verifier: OpenSSLVerifier) -> None:
    assert [c.sha256 for c in verifier.trusted] == [sha256(pec_kit.pki().root.certificate)]


@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n"])
def test_a_bad_ca_file_is_a_configuration_fault(tmp_path: Path, content: bytes | None) -> None:
    ca_file = tmp_path / "pec-ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        OpenSSLVerifier(ca_file)
    assert raised.value.key == "pec.ca_file"


def test_a_missing_openssl_is_a_configuration_fault(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        OpenSSLVerifier(pec_kit.pki().write_root(tmp_path), openssl="/nonexistent/openssl")


# --------------------------------------------------------------------------
# The pure rules, with a fake verifier


SIGNER = Certificate(
    subject="CN=Posta Certificata", issuer="CN=AgID CA1", not_before=None, not_after=None,
    sha256="00", emails=(f"posta-certificata@{PROVIDER}",), ca=False, pem="",
)


class FakeVerifier:
    """Answers what it is told and remembers what it was asked."""

    def __init__(self, answer: SignatureCheck) -> None:
        self.answer = answer
        self.calls: list[tuple[SignedPart, datetime, str]] = []

    def verify(self, signed: SignedPart, at: datetime, sender: str) -> SignatureCheck:
        self.calls.append((signed, at, sender))
        return self.answer


def test_the_verifier_is_asked_at_the_envelope_date_for_the_envelope_sender() -> None:
    fake = FakeVerifier(SignatureCheck(VALID, "ok", SIGNER))
    raw = pec_kit.build(Pec())
    assert check_signature(raw, facts_of(raw), fake).status is VALID
    [(signed, at, sender)] = fake.calls
    assert (at, sender) == (DATE, f"posta-certificata@{PROVIDER}")
    assert signed.content == pec_kit.signed_content(Pec())


def test_a_valid_answer_for_another_signer_is_untrusted() -> None:
    other = replace(SIGNER, emails=("posta-certificata@x.example", "y@x.example"))
    raw = pec_kit.build(Pec())
    result = check_signature(raw, facts_of(raw), FakeVerifier(SignatureCheck(VALID, "ok", other)))
    assert result.status is UNTRUSTED
    assert result.reason == "signer posta-certificata@x.example, y@x.example is not the envelope sender"


def test_a_valid_answer_without_a_signer_is_untrusted() -> None:
    result = signer_is_sender(SignatureCheck(VALID, "ok"), f"posta-certificata@{PROVIDER}")
    assert (result.status, result.reason) == (UNTRUSTED, "signer without an e-mail address is not the envelope sender")


def test_the_signer_rule_is_case_insensitive() -> None:
    shouting = replace(SIGNER, emails=(f"Posta-Certificata@{PROVIDER.upper()}",))
    assert signer_is_sender(SignatureCheck(VALID, "ok", shouting), f"posta-certificata@{PROVIDER}").status is VALID


def test_a_missing_signature_never_reaches_the_verifier() -> None:
    fake = FakeVerifier(SignatureCheck(VALID, "ok", SIGNER))
    raw = pec_kit.unsigned(Pec())
    assert check_signature(raw, facts_of(raw), fake).status is SignatureStatus.MISSING
    assert fake.calls == []


AT = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(("outcome", "status", "reason"), [
    (CmsOutcome(0, None, ""), VALID, "PEC signature valid at 2025-03-14T09:30:00+00:00"),
    (CmsOutcome(32, None, ""), INVALID, "PEC signature does not verify"),
    (CmsOutcome(42, 32, "certificate has expired"), INVALID, "PEC signature does not verify"),
    (CmsOutcome(42, 0, "certificate has expired"), UNTRUSTED,
     "signer not valid at the envelope date 2025-03-14T09:30:00+00:00: certificate has expired"),
    (CmsOutcome(52, 0, "unable to get local issuer certificate"), UNTRUSTED,
     "signer not trusted: unable to get local issuer certificate"),
    (CmsOutcome(58, 0, ""), UNTRUSTED, "signer not trusted: verify error 26"),
    (CmsOutcome(95, 0, "email address mismatch"), UNTRUSTED,
     f"signer posta-certificata@{PROVIDER} is not the envelope sender"),
    (CmsOutcome(2, None, ""), INVALID, "PEC signature does not verify: unreadable signature"),
])
def test_judge(outcome: CmsOutcome, status: SignatureStatus, reason: str) -> None:
    assert judge(outcome, AT, SIGNER) == (status, reason)
