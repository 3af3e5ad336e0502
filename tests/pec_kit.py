"""Build PEC messages in the test: a CA like AgID's, provider certificates, daticert.xml, envelopes, receipts.

The shapes follow the real messages of the corpus README (Aruba, Sogei): a
``multipart/signed`` around a ``multipart/mixed`` with the provider's notice,
``daticert.xml`` and, on envelopes, ``postacert.eml``; the detached ``smime.p7s``
carries the provider certificate and its intermediate. Certificates and
signatures are made here with ``cryptography``, so the tests need no file from
outside the repository.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PROVIDER = "pec.provider.example"
OTHER_PROVIDER = "pec.altro-gestore.example"
SENDER = "referente.tecnico@pec.ateneo.example.it"
HELPDESK = "helpdesk@pec.servizi.example.it"
ROME = timezone(timedelta(hours=1))
DATE = datetime(2025, 3, 14, 10, 30, 0, tzinfo=ROME)
PEC_POLICY = x509.ObjectIdentifier("1.3.76.16.3.1.1")

RECEIPT_SUBJECTS = {
    "accettazione": "ACCETTAZIONE: ",
    "non-accettazione": "AVVISO DI NON ACCETTAZIONE: ",
    "presa-in-carico": "PRESA IN CARICO: ",
    "avvenuta-consegna": "CONSEGNA: ",
    "posta-certificata": "POSTA CERTIFICATA: ",
    "errore-consegna": "AVVISO DI MANCATA CONSEGNA: ",
    "preavviso-errore-consegna": "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ",
    "rilevazione-virus": "PROBLEMA DI SICUREZZA: ",
}
"""Every X-Ricevuta type, with the subject prefix its notice carries."""

_DELIVERY_TYPES = frozenset({"avvenuta-consegna", "errore-consegna", "preavviso-errore-consegna"})
_ERRORS = {"errore-consegna": "no-dest", "preavviso-errore-consegna": "altro", "rilevazione-virus": "virus",
           "non-accettazione": "altro"}


# --------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Issued:
    """A certificate and its key."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@functools.cache
def _key(role: str) -> rsa.RSAPrivateKey:
    """One key per role, made once per test run (RSA keys take a while to make)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common: str, organization: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common),
    ])


def _builder(subject: x509.Name, issuer: Issued | None, key: rsa.RSAPrivateKey,
             not_before: datetime, not_after: datetime) -> x509.CertificateBuilder:
    issuer_name = issuer.certificate.subject if issuer else subject
    issuer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
    )


def _ca(subject: x509.Name, issuer: Issued | None, role: str, path_length: int | None,
        permitted: Sequence[str] = ()) -> Issued:
    key = _key(role)
    builder = (
        _builder(subject, issuer, key, datetime(2010, 1, 1, tzinfo=UTC), datetime(2045, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        ), critical=True)
    )
    if permitted:  # like AgID CA1: only the PEC providers' domains
        builder = builder.add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.RFC822Name(domain) for domain in permitted], excluded_subtrees=None,
        ), critical=True)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@dataclass(frozen=True)
class Pki:
    """A public root, an AgID-like intermediate under it, and provider certificates it issues."""

    root: Issued
    intermediate: Issued

    def provider(
        self, email: str = f"posta-certificata@{PROVIDER}", *,
        not_before: datetime = datetime(2024, 1, 1, tzinfo=UTC),
        not_after: datetime = datetime(2027, 1, 1, tzinfo=UTC),
        usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ) -> Issued:
        return _provider(self, email, not_before, not_after, usage)

    def write_root(self, directory: Path) -> Path:
        """ca_file with the root only: the chain must be built through the carried intermediate."""
        path = directory / "pec-ca.pem"
        path.write_bytes(self.root.pem)
        return path


@functools.cache
def _provider(
    pki: Pki, email: str, not_before: datetime, not_after: datetime, usage: x509.ObjectIdentifier
) -> Issued:
    key = _key(f"provider {pki.intermediate.certificate.subject.rfc4514_string()}")
    subject = _name(f"Posta Certificata {email.partition('@')[2]}", "Gestore di prova S.p.A.")
    certificate = (
        _builder(subject, pki.intermediate, key, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.CertificatePolicies([x509.PolicyInformation(PEC_POLICY, None)]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
        .sign(pki.intermediate.key, hashes.SHA256())
    )
    return Issued(certificate, key)


@functools.cache
def pki(name: str = "trusted") -> Pki:
    """The test PKI; ``pki("rogue")`` has the same names as the trusted one, and other keys."""
    root = _ca(_name("Public Root CA di prova", "Radice Pubblica S.p.A."), None, f"{name} root", None)
    intermediate = _ca(
        _name("AgID CA1 di prova", "Agenzia per l'Italia Digitale"), root, f"{name} intermediate", 0,
        permitted=(PROVIDER, OTHER_PROVIDER),
    )
    return Pki(root, intermediate)


def sign(content: bytes, signer: Issued, chain: Sequence[Issued]) -> bytes:
    """A detached CMS signature over ``content`` as given (already canonical), in DER."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(
        signer.certificate, signer.key, hashes.SHA256()
    )
    for issued in chain:
        builder = builder.add_certificate(issued.certificate)
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])


# --------------------------------------------------------------------------
# Messages


@dataclass(frozen=True)
class Pec:
    """One PEC message to build; every default is an ordinary envelope from the referente."""

    kind: str = "envelope"
    """"envelope", "anomaly" or "receipt"."""
    receipt_type: str = "accettazione"
    provider: str = PROVIDER
    sender: str = SENDER
    mittente: str | None = None
    """daticert's mittente; the sender when None."""
    per_conto_di: str | None = None
    inner_from: str | None = None
    """The postacert.eml From header; ``Name <sender>`` when None."""
    recipient: str = HELPDESK
    subject: str = "Richiesta reset password casella"
    body: str = "Buongiorno,\r\nchiedo il reset della password della casella mario.rossi@ateneo.example.it.\r\n"
    date: datetime = DATE
    original_id: str = "<orig.20250314.1@pec.ateneo.example.it>"
    reply_to: str | None = None
    errore_esteso: str = "5.1.1 - Gestore di prova - indirizzo non valido"
    daticert: bytes | None = None
    """daticert.xml as given, instead of the one built."""
    with_daticert: bool | None = None
    """None: every kind but the anomaly carries one."""
    header_names: dict[str, str] = field(default_factory=dict)
    """Header names to write otherwise, e.g. ``{"X-Ricevuta": "x-ricevuta"}``."""


def daticert_xml(pec: Pec) -> bytes:
    """A daticert.xml as the providers write it (intestazione, dati, data with zona)."""
    tipo = pec.receipt_type if pec.kind == "receipt" else "posta-certificata"
    errore = _ERRORS.get(tipo, "nessuno") if pec.kind == "receipt" else "nessuno"
    mittente = pec.mittente if pec.mittente is not None else pec.sender
    data = [
        f"        <gestore-emittente>Gestore di prova S.p.A. ({pec.provider})</gestore-emittente>",
        f'        <data zona="{pec.date.strftime("%z")}">',
        f"            <giorno>{pec.date:%d/%m/%Y}</giorno>",
        f"            <ora>{pec.date:%H:%M:%S}</ora>",
        "        </data>",
        f"        <identificativo>opec21.{pec.date:%Y%m%d%H%M%S}.1.1@{pec.provider}</identificativo>",
        f"        <msgid>{escape(pec.original_id)}</msgid>",
    ]
    if tipo in {"posta-certificata", "avvenuta-consegna"}:
        data.append('        <ricevuta tipo="completa" />')
    if tipo in _DELIVERY_TYPES:
        data.append(f"        <consegna>{escape(pec.recipient)}</consegna>")
    if tipo == "presa-in-carico":
        data.append(f"        <ricezione>{escape(pec.recipient)}</ricezione>")
    if errore != "nessuno":
        data.append(f"        <errore-esteso>{escape(pec.errore_esteso)}</errore-esteso>")
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<postacert tipo="{tipo}" errore="{errore}">',
        "    <intestazione>",
        f"        <mittente>{escape(mittente)}</mittente>",
        f'        <destinatari tipo="certificato">{escape(pec.recipient)}</destinatari>',
        f"        <risposte>{escape(pec.reply_to or mittente)}</risposte>",
        f"        <oggetto>{escape(pec.subject)}</oggetto>",
        "    </intestazione>",
        "    <dati>", *data, "    </dati>",
        "</postacert>",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def inner_message(pec: Pec) -> bytes:
    """The original message (postacert.eml), CRLF."""
    from_ = pec.inner_from if pec.inner_from is not None else f"Referente Tecnico <{pec.sender}>"
    lines = [
        f"Date: {format_datetime(pec.date)}",
        f"From: {from_}",
        f"To: {pec.recipient}",
        f"Subject: {pec.subject}",
        f"Message-ID: {pec.original_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    if pec.reply_to:
        lines.append(f"Reply-To: {pec.reply_to}")
    return ("\r\n".join(lines) + "\r\n\r\n" + pec.body).encode("utf-8")


def signed_content(pec: Pec) -> bytes:
    """The multipart/mixed entity the provider signs: notice, daticert.xml, postacert.eml."""
    boundary = "----=_mixed_7F3A"
    notice = (
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"Messaggio di posta certificata\r\nIl giorno {pec.date:%d/%m/%Y} alle ore {pec.date:%H:%M:%S} "
        f'il messaggio "{pec.subject}" è stato inviato da "{pec.sender}" indirizzato a: {pec.recipient}\r\n'
    ).encode()
    parts = [notice]
    if pec.with_daticert if pec.with_daticert is not None else pec.kind != "anomaly":
        xml = pec.daticert if pec.daticert is not None else daticert_xml(pec)
        parts.append(
            b'Content-Type: application/xml; name="daticert.xml"\r\n'
            b'Content-Disposition: inline; filename="daticert.xml"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + _base64(xml)
        )
    if pec.kind != "receipt" or pec.receipt_type == "avvenuta-consegna":
        parts.append(
            b'Content-Type: message/rfc822; name="postacert.eml"\r\n'
            b'Content-Disposition: inline; filename="postacert.eml"\r\n\r\n' + inner_message(pec)
        )
    return _multipart("multipart/mixed", boundary, parts)


def envelope_headers(pec: Pec) -> list[tuple[str, str]]:
    """The top-level header fields of the PEC message (the provider's envelope or notice)."""
    headers = [
        ("Return-Path", f"<posta-certificata@{pec.provider}>"),
        ("Received", f"from mx.{pec.provider} by mx.servizi.example.it; {format_datetime(pec.date)}"),
        ("Message-ID", f"<opec21.{pec.date:%Y%m%d%H%M%S}.1.1@{pec.provider}>"),
        ("Date", format_datetime(pec.date)),
        ("To", pec.recipient),
        ("X-Riferimento-Message-ID", pec.original_id),
    ]
    per_conto_di = pec.per_conto_di if pec.per_conto_di is not None else pec.sender
    if pec.kind == "receipt":
        headers += [
            ("From", f"posta-certificata@{pec.provider}"),
            ("Subject", RECEIPT_SUBJECTS[pec.receipt_type] + pec.subject),
            ("X-Ricevuta", pec.receipt_type),
        ]
        if pec.receipt_type == "rilevazione-virus":
            headers.append(("X-VerificaSicurezza", "errore"))
    else:
        envelope = pec.kind == "envelope"
        headers += [
            ("From", f'"Per conto di: {per_conto_di}" <posta-certificata@{pec.provider}>'),
            ("Subject", ("POSTA CERTIFICATA: " if envelope else "ANOMALIA MESSAGGIO: ") + pec.subject),
            ("Reply-To", pec.reply_to or pec.sender),
            ("X-Trasporto", "posta-certificata" if envelope else "errore"),
        ]
        if envelope:
            headers.append(("X-TipoRicevuta", "completa"))
    return [(pec.header_names.get(name, name), value) for name, value in headers]


def build(pec: Pec, signer: Issued | None = None, chain: Sequence[Issued] | None = None) -> bytes:
    """The whole PEC message, signed by ``signer`` (the trusted provider by default) with ``chain``."""
    tpki = pki()
    signer = signer or tpki.provider(f"posta-certificata@{pec.provider}")
    content = signed_content(pec)
    signature = sign(content, signer, chain if chain is not None else (tpki.intermediate,))
    return signed_message(envelope_headers(pec), content, signature)


def unsigned(pec: Pec) -> bytes:
    """The same message without its S/MIME layer: PEC header fields, nothing signed."""
    content = signed_content(pec)
    head, _, body = content.partition(b"\r\n\r\n")
    return _header_block(envelope_headers(pec)) + b"MIME-Version: 1.0\r\n" + head + b"\r\n\r\n" + body


def signed_message(headers: list[tuple[str, str]], content: bytes, signature: bytes) -> bytes:
    boundary = "----=_signed_1C9B"
    p7s = (
        b'Content-Type: application/x-pkcs7-signature; name="smime.p7s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n' + _base64(signature)
    )
    body = _multipart("", boundary, [content, p7s])
    return (
        _header_block(headers)
        + b"MIME-Version: 1.0\r\n"
        + b'Content-Type: multipart/signed; protocol="application/x-pkcs7-signature"; micalg="sha-256"; '
        + f'boundary="{boundary}"\r\n\r\n'.encode()
        + b"This is an S/MIME signed message\r\n\r\n" + body
    )


def rewrapped(raw: bytes) -> bytes:
    """``raw`` as a mailing list forwards it: inside a multipart/mixed, with a footer after it."""
    head, _, body = raw.partition(b"\r\n\r\n")
    kept = [line for line in head.split(b"\r\n") if not line.lower().startswith((b"content-type", b"mime-version"))]
    signed_head = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-type")]
    inner = b"\r\n".join(signed_head) + b"\r\n\r\n" + body
    footer = b"Content-Type: text/plain\r\n\r\n-- \r\nLista servizi@lists.example.it\r\n"
    return (
        b"\r\n".join(kept) + b"\r\nMIME-Version: 1.0\r\n"
        + b'Content-Type: multipart/mixed; boundary="list-wrap"\r\n\r\n'
        + _multipart("", "list-wrap", [inner, footer])
    )


def as_lf(raw: bytes) -> bytes:
    """``raw`` as a Maildir stores it: LF line ends."""
    return raw.replace(b"\r\n", b"\n")


def with_date(pec: Pec, date: datetime) -> Pec:
    return replace(pec, date=date)


def _multipart(content_type: str, boundary: str, parts: Sequence[bytes]) -> bytes:
    """The body of a multipart (with its Content-Type header first when ``content_type`` is given)."""
    delimiter = f"--{boundary}".encode()
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + b"--\r\n"
    if not content_type:
        return body
    return f'Content-Type: {content_type}; boundary="{boundary}"\r\n\r\n'.encode() + body


def _header_block(headers: list[tuple[str, str]]) -> bytes:
    return "".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8")


def _base64(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"\r\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + b"\r\n"
