"""Verify a PEC provider's detached S/MIME signature, with ``openssl cms -verify`` behind a small Protocol.

``cryptography`` cannot verify CMS signatures, and hand-written CMS code is where
signature checks go wrong, so the real verifier runs the ``openssl`` command.
What it trusts is exactly the certificates of ``ca_file``: the default
certificate directory and store are switched off (``-no-CApath -no-CAstore``),
and ``-partial_chain`` lets an operator pin an intermediate such as AgID CA1, or a
provider's own certificate, without its root. The chain must hold at the
envelope's date (``-attime``: provider certificates last about three years, and a
message is judged as of when it was certified) and allow S/MIME signing
(``-purpose smimesign``). The certificates the message carries are used as
untrusted intermediates only.

The signer's e-mail address must be the envelope's From address. openssl checks
it exactly (``-verify_email``, on the certificate itself rather than on its text
form), and the same rule is applied again here, in pure code, whatever the
verifier, so a fake verifier in a test is judged by it too.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from maild.errors import ConfigError
from maild.mail.pec import PecFacts, SignedPart, Unreadable, signed_part

DEFAULT_TIMEOUT = 10.0
"""Seconds one openssl run may take before the message is left uncertified."""
MAX_CERTIFICATES = 32
"""Certificates read from one signature: a PEC signature carries two or three."""
MAX_TRUSTED = 4096
"""Certificates read from ca_file: room for a whole CA bundle."""

_NO_DEFAULT_TRUST = ("-no-CAfile", "-no-CApath", "-no-CAstore")
"""A content-only run trusts nothing, so it loads none of openssl's default certificates."""
_CONTENT_FAILURE = 32
"""``-verify_retcode`` exit status when the content does not match the signature."""
_TIME_ERRORS = frozenset({9, 10})
"""X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED."""
_EMAIL_MISMATCH = 63
"""X509_V_ERR_EMAIL_MISMATCH, from ``-verify_email``."""
_VERIFY_ERROR = re.compile(rb"Verify error: ?([^\r\n]{1,200})")
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n(.*?)-----END CERTIFICATE-----", re.DOTALL)
_MONTHS = {
    name: number for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_OPENSSL_DATE = re.compile(r"([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}) GMT")
_EMAIL = re.compile(r"[^\s@<>(),;:\"]+@[^\s@<>(),;:\"]+")


class SignatureStatus(enum.StrEnum):
    """What the provider's signature proves; only ``valid`` certifies a sender."""

    VALID = "valid"
    INVALID = "invalid"
    """Does not verify: the content was changed, or the signature is garbled."""
    UNTRUSTED = "untrusted"
    """Verifies, but the chain does not reach ca_file, does not hold at the envelope date,
    or the signer is not the envelope's sender."""
    MISSING = "missing"
    NOT_CHECKED = "not_checked"


@dataclass(frozen=True, slots=True)
class Certificate:
    """What an operator needs to recognise and pin a certificate."""

    subject: str
    issuer: str
    not_before: datetime | None
    not_after: datetime | None
    sha256: str
    """Fingerprint of the DER certificate, upper-case hex pairs joined by colons."""
    emails: tuple[str, ...]
    """subjectAltName e-mail addresses."""
    ca: bool
    pem: str
    """The certificate itself, to pin it in ca_file."""


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    status: SignatureStatus
    reason: str
    signer: Certificate | None = None
    certificates: tuple[Certificate, ...] = ()
    """Every certificate the signature carries (the signer and its chain), for an inspect report."""


class SignatureVerifier(Protocol):
    """Checks a signature, its chain at a date, and that the signer is ``sender``."""

    def verify(self, signed: SignedPart, at: datetime, sender: str) -> SignatureCheck: ...


# --------------------------------------------------------------------------
# Pure decisions


def check_signature(raw: bytes, facts: PecFacts, verifier: SignatureVerifier | None) -> SignatureCheck:
    """The signature status of a PEC message: ``verifier`` is None when no ca_file is configured."""
    found = signed_part(raw)
    if found is None:
        return SignatureCheck(SignatureStatus.MISSING, "PEC message is not signed")
    if isinstance(found, Unreadable):
        return SignatureCheck(SignatureStatus.INVALID, f"PEC signature does not verify: {found.reason}")
    if verifier is None:
        return SignatureCheck(SignatureStatus.NOT_CHECKED, "PEC signature not checked: no [pec] ca_file")
    if facts.envelope_date is None:
        return SignatureCheck(SignatureStatus.UNTRUSTED, "signer not trusted: the envelope has no date to check it at")
    check = verifier.verify(found, facts.envelope_date, facts.envelope_from)
    return signer_is_sender(check, facts.envelope_from)


def signer_is_sender(check: SignatureCheck, envelope_from: str) -> SignatureCheck:
    """A valid signature certifies only when its signer is the envelope From address."""
    if check.status is not SignatureStatus.VALID:
        return check
    emails = check.signer.emails if check.signer else ()
    if envelope_from and envelope_from.lower() in {e.lower() for e in emails}:
        return check
    return dataclasses.replace(check, status=SignatureStatus.UNTRUSTED, reason=_not_sender(check.signer))


def _not_sender(signer: Certificate | None) -> str:
    who = ", ".join(signer.emails) if signer and signer.emails else "without an e-mail address"
    return f"signer {who} is not the envelope sender"


@dataclass(frozen=True, slots=True)
class CmsOutcome:
    """What ``openssl cms -verify -verify_retcode`` said about one signature."""

    chain: int
    """Exit status of the full verification: 0, 32 (content), 32 + an X509_V_ERR code, or another fault."""
    content: int | None
    """Exit status of the content-only run (``-noverify``), made only when the chain failed."""
    error: str
    """The ``Verify error:`` text of the full verification."""


def judge(outcome: CmsOutcome, at: datetime, signer: Certificate | None) -> tuple[SignatureStatus, str]:
    """The status and reason for what openssl said: a changed message first, then the chain."""
    if outcome.chain == 0:
        return SignatureStatus.VALID, f"PEC signature valid at {at.isoformat()}"
    if outcome.chain == _CONTENT_FAILURE or (outcome.chain > _CONTENT_FAILURE and outcome.content != 0):
        return SignatureStatus.INVALID, "PEC signature does not verify"
    if outcome.chain < _CONTENT_FAILURE:
        return SignatureStatus.INVALID, "PEC signature does not verify: unreadable signature"
    code = outcome.chain - _CONTENT_FAILURE
    text = outcome.error or f"verify error {code}"
    if code == _EMAIL_MISMATCH:
        return SignatureStatus.UNTRUSTED, _not_sender(signer)
    if code in _TIME_ERRORS:
        return SignatureStatus.UNTRUSTED, f"signer not valid at the envelope date {at.isoformat()}: {text}"
    return SignatureStatus.UNTRUSTED, f"signer not trusted: {text}"


def parse_certificates(text: str, limit: int = MAX_CERTIFICATES) -> tuple[Certificate, ...]:
    """Read ``openssl storeutl -text -certs`` output: the text form for the facts, the PEM for the fingerprint."""
    blocks = re.split(r"(?m)^\d+: Certificate$", text)[1:limit + 1]
    return tuple(c for c in (_certificate(b) for b in blocks) if c is not None)


def _certificate(block: str) -> Certificate | None:
    pem = _PEM.search(block.encode("utf-8", "replace"))
    der = _der(pem.group(0)) if pem else None
    if pem is None or der is None:
        return None
    lines = block[:block.find("-----BEGIN CERTIFICATE-----")].splitlines()
    return Certificate(
        subject=_field(lines, "        Subject: "),
        issuer=_field(lines, "        Issuer: "),
        not_before=_openssl_date(_field(lines, "            Not Before: ")),
        not_after=_openssl_date(_field(lines, "            Not After : ")),
        sha256=fingerprint(der),
        emails=tuple(
            item.strip()[len("email:"):] for item in _after(lines, "X509v3 Subject Alternative Name:").split(",")
            if item.strip().startswith("email:") and _EMAIL.fullmatch(item.strip()[len("email:"):])
        ),
        ca=_after(lines, "X509v3 Basic Constraints:").strip().startswith("CA:TRUE"),
        pem=pem.group(0).decode("ascii", "replace") + "\n",
    )


def fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _field(lines: list[str], prefix: str) -> str:
    """The first line with exactly this indentation and label: the certificate's own, not an extension's."""
    return next((line[len(prefix):].strip() for line in lines if line.startswith(prefix)), "")


def _after(lines: list[str], label: str) -> str:
    """The line after an extension's label: its value."""
    for index, line in enumerate(lines[:-1]):
        if line.startswith("            ") and line.strip().startswith(label):
            return lines[index + 1].strip()
    return ""


def _openssl_date(value: str) -> datetime | None:
    """``Feb 10 12:32:21 2014 GMT``, read without the locale."""
    match = _OPENSSL_DATE.fullmatch(value)
    if match is None or match.group(1) not in _MONTHS:
        return None
    month, day, hour, minute, second, year = match.groups()
    try:
        return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:
        return None


# --------------------------------------------------------------------------
# The openssl command


@dataclass(frozen=True, slots=True)
class _Run:
    returncode: int
    stdout: bytes
    stderr: bytes


class _OpenSSL:
    """Runs the ``openssl`` command; a missing or unrunnable command is a configuration fault."""

    def __init__(self, openssl: str, timeout: float) -> None:
        executable = shutil.which(openssl)
        if executable is None:
            raise ConfigError("pec.ca_file", f"the {openssl} command is needed to verify PEC signatures")
        self.executable = executable
        self.timeout = timeout

    def run(self, *args: str) -> _Run:
        """Raises ``subprocess.TimeoutExpired``, for the caller to turn into a value."""
        try:
            done = subprocess.run(
                [self.executable, *args], capture_output=True, stdin=subprocess.DEVNULL,
                timeout=self.timeout, check=False,
            )
        except OSError as exc:
            raise ConfigError("pec.ca_file", f"cannot run {self.executable}: {exc.strerror}") from exc
        return _Run(done.returncode, done.stdout, done.stderr)

    def certificates(self, path: Path, limit: int = MAX_CERTIFICATES) -> tuple[Certificate, ...]:
        if not path.exists() or path.stat().st_size == 0:
            return ()
        listed = self.run("storeutl", "-text", "-certs", str(path))
        return parse_certificates(listed.stdout.decode("utf-8", "replace"), limit)


def carried_certificates(
    signature: bytes, *, openssl: str = "openssl", timeout: float = DEFAULT_TIMEOUT
) -> tuple[Certificate, ...]:
    """The certificates a signature carries, trusted or not: what an operator inspects before pinning one."""
    command = _OpenSSL(openssl, timeout)
    with tempfile.TemporaryDirectory(prefix="maild-pec-") as tmp:
        work = Path(tmp)
        (work / "smime.p7s").write_bytes(signature)
        try:
            command.run("cms", "-cmsout", "-noout", "-inform", "DER", "-in", str(work / "smime.p7s"),
                        "-certsout", str(work / "certs.pem"))
            return command.certificates(work / "certs.pem")
        except subprocess.TimeoutExpired:
            return ()


# --------------------------------------------------------------------------
# The openssl verifier


class OpenSSLVerifier:
    """The real verifier: one ``openssl cms`` run and one ``openssl storeutl`` run a message.

    A second ``cms`` run (content only, ``-noverify``) is made only when the chain
    fails, to tell a changed message (``invalid``) from an untrusted signer.
    """

    def __init__(self, ca_file: Path | str, *, openssl: str = "openssl", timeout: float = DEFAULT_TIMEOUT) -> None:
        self._openssl = _OpenSSL(openssl, timeout)
        self.ca_file = Path(ca_file).resolve()
        self.trusted = self._trusted()
        """The certificates of ca_file, as openssl reads them."""

    def verify(self, signed: SignedPart, at: datetime, sender: str) -> SignatureCheck:
        with tempfile.TemporaryDirectory(prefix="maild-pec-") as tmp:
            work = Path(tmp)
            (work / "content").write_bytes(signed.content)
            (work / "smime.p7s").write_bytes(signed.signature)
            try:
                outcome = self._outcome(work, at, sender)
                certificates = self._openssl.certificates(work / "certs.pem")
            except subprocess.TimeoutExpired:  # a value: this message is not certified, the daemon goes on
                return SignatureCheck(
                    SignatureStatus.NOT_CHECKED,
                    f"PEC signature not checked: openssl took over {self._openssl.timeout:g} s",
                )
            signer = _signer(work / "signer.pem", certificates)
        status, reason = judge(outcome, at, signer)
        return SignatureCheck(status, reason, signer, certificates)

    def _outcome(self, work: Path, at: datetime, sender: str) -> CmsOutcome:
        """The full verification; the content alone only when the chain failed."""
        email = ("-verify_email", sender) if sender else ()
        chain = self._cms(
            work, "-CAfile", str(self.ca_file), "-no-CApath", "-no-CAstore", "-partial_chain",
            "-purpose", "smimesign", "-attime", str(int(at.timestamp())), *email,
        )
        if 0 < chain.returncode < _CONTENT_FAILURE and b"Error loading file" in chain.stderr:
            raise ConfigError("pec.ca_file", f"openssl cannot load {self.ca_file}")
        content = None
        if chain.returncode > _CONTENT_FAILURE:
            content = self._cms(work, "-noverify", *_NO_DEFAULT_TRUST).returncode
        return CmsOutcome(chain.returncode, content, _verify_error(chain.stderr))

    def _cms(self, work: Path, *options: str) -> _Run:
        return self._openssl.run(
            "cms", "-verify", "-verify_retcode", "-binary", "-inform", "DER",
            "-in", str(work / "smime.p7s"), "-content", str(work / "content"),
            "-certsout", str(work / "certs.pem"), "-signer", str(work / "signer.pem"),
            "-out", os.devnull, *options,
        )

    def _trusted(self) -> tuple[Certificate, ...]:
        if not self.ca_file.is_file():
            raise ConfigError("pec.ca_file", f"{self.ca_file} is not a readable file")
        try:
            trusted = self._openssl.certificates(self.ca_file, limit=MAX_TRUSTED)
        except subprocess.TimeoutExpired as exc:
            raise ConfigError("pec.ca_file", f"openssl did not read {self.ca_file} in time") from exc
        if not trusted:
            raise ConfigError("pec.ca_file", f"{self.ca_file} holds no certificate openssl can read")
        return trusted


def _verify_error(stderr: bytes) -> str:
    match = _VERIFY_ERROR.search(stderr)
    return match.group(1).decode("ascii", "replace").strip() if match else ""


def _signer(path: Path, certificates: tuple[Certificate, ...]) -> Certificate | None:
    """The carried certificate openssl named as the signer (written only when the content verified)."""
    if not path.exists():
        return None
    der = _der(path.read_bytes())
    sha256 = fingerprint(der) if der is not None else None
    return next((c for c in certificates if c.sha256 == sha256), None)


def _der(pem: bytes) -> bytes | None:
    """The first certificate of a PEM text, as DER."""
    match = _PEM.search(pem)
    if match is None:
        return None
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError):
        return None
