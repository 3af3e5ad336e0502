"""Where replies go: the MailTransport protocol and the SMTP transport.

Error contract of every transport, which decides what the outbox does:

* ``TransportUnavailable`` — keep the reply and retry later: the server cannot
  be reached, or refused us for a reason that concerns every message alike
  (authentication, TLS certificate, STARTTLS not offered). Treating those as
  permanent would throw away every reply while an operator fixes the
  configuration; they are logged as errors instead.
* ``TransportDeferred`` (a ``TransportUnavailable``) — keep THIS reply and retry
  it later, go on with the others: once connected, the server answered 4xx to
  its MAIL, RCPT or DATA (greylisting, rate limits) or dropped the connection
  under it; the next reply opens a new connection at once.
* ``TransportError`` — this reply can never be delivered: the server refused
  the sender or the data with 5xx, or refused *every* recipient with 5xx.
  A reply accepted for some recipients and refused for others counts as sent
  (the refusals are logged): retrying would duplicate it for the others.

``SmtpTransport`` keeps ONE connection and reuses it across replies, checking it
with NOOP only after it sat idle for a while. A reused connection that turns
out dead is replaced once, transparently; a fresh one that fails is a fault.

``send`` takes an optional ``meanwhile``: work the caller needs done before this
reply's data goes out, run while the server considers the MAIL command. The
sender marks the previous reply sent there, so its commit costs no round trip
and yet no reply's data leaves before the one ahead of it is recorded sent.
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from typing import Protocol

from maild.errors import ConfigError, TransportDeferred, TransportError, TransportUnavailable
from maild.mail.maildir import MaildirSink
from maild.records import OutgoingMail
from maild.settings import Settings, Smtp

log = logging.getLogger("maild.transport")

NOOP_AFTER = 30.0
"""Seconds of idleness after which the connection is checked with NOOP before reuse."""
_BARE_LF = re.compile(rb"(?<!\r)\n")
_REFUSED_US = (smtplib.SMTPAuthenticationError, smtplib.SMTPHeloError, smtplib.SMTPConnectError)
"""Refusals that concern the connection, not the message: never a reason to drop a reply."""


class MailTransport(Protocol):
    """Sends one rendered reply; see the module docstring for the error contract."""

    def send(self, mail: OutgoingMail, meanwhile: Callable[[], None] | None = None) -> None:
        """Send ``mail``; run ``meanwhile`` exactly once, before its data leaves, failed or not."""
        ...

    def close(self) -> None:
        ...


def make_transport(settings: Settings) -> MailTransport:
    """Build the transport ``settings.smtp.kind`` names."""
    smtp = settings.smtp
    if smtp.kind == "smtp":
        return SmtpTransport(smtp)
    if smtp.kind == "maildir":
        return MaildirSink(smtp.path)
    raise ConfigError("smtp.kind", f"unknown transport kind {smtp.kind!r}")


class SmtpTransport:
    """``MailTransport`` over smtplib with one reused connection, owned by one thread."""

    def __init__(
        self,
        settings: Smtp,
        *,
        clock: Callable[[], float] = time.monotonic,
        noop_after: float = NOOP_AFTER,
        local_hostname: str | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._noop_after = noop_after
        self._local_hostname = local_hostname
        self._conn: _Connection | None = None
        self._connecting = False
        """True while a connection is being opened or checked: a fault then concerns every reply."""
        self._last_used = 0.0
        self._where = f"SMTP {settings.host}:{settings.port}"

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def send(self, mail: OutgoingMail, meanwhile: Callable[[], None] | None = None) -> None:
        work = _OneShot(meanwhile)
        try:
            self._send(mail, work)
        finally:
            work.run()  # not run yet when no MAIL command went out: run it now

    def _send(self, mail: OutgoingMail, work: _OneShot) -> None:
        if not mail.recipients:
            raise TransportError(f"{mail.kind} {mail.message_id}: no recipients")
        reused = self._conn is not None
        try:
            try:
                refused = self._deliver(mail, work)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                if not reused:
                    raise
                log.info("%s: reused connection was dropped; reconnecting", self._where)
                self._drop()
                refused = self._deliver(mail, work)
        except (smtplib.SMTPException, OSError) as exc:
            raise self._translate(exc, mail) from exc
        if refused:
            log.warning("%s: %s %s refused for %s", self._where, mail.kind, mail.message_id, refused)
        log.debug("%s: sent %s %s to %s", self._where, mail.kind, mail.message_id, mail.recipients)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    # ------------------------------------------------------------ helpers

    def _deliver(self, mail: OutgoingMail, work: _OneShot) -> dict[str, tuple[int, bytes]]:
        self._connecting = True
        conn = self._connection()
        self._connecting = False
        data = _BARE_LF.sub(b"\r\n", mail.data)
        options = _mail_options(conn, mail, data)
        conn.meanwhile = work.run
        try:
            refused = conn.sendmail(mail.envelope_from, list(mail.recipients), data, mail_options=options)
        except (smtplib.SMTPException, OSError):
            raise
        except BaseException:
            self._drop()  # ``meanwhile`` failed between MAIL and its reply: the session is mid-command
            raise
        finally:
            conn.meanwhile = None
        self._last_used = self._clock()
        return refused

    def _connection(self) -> _Connection:
        if self._conn is not None and self._clock() - self._last_used > self._noop_after:
            try:
                code = self._conn.noop()[0]
            except (smtplib.SMTPException, OSError):
                code = -1
            if code != 250:
                log.info("%s: idle connection is gone; reconnecting", self._where)
                self._drop()
        if self._conn is None:
            self._conn = self._open()
            self._last_used = self._clock()
        return self._conn

    def _open(self) -> _Connection:
        s = self._settings
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        conn: _Connection
        if s.tls == "ssl":
            conn = _SslConnection(s.host, s.port, self._local_hostname, timeout=s.timeout, context=context)
        else:
            conn = _Connection(s.host, s.port, self._local_hostname, timeout=s.timeout)
        try:
            conn.ehlo()
            if s.tls == "starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if s.username:
                _login(conn, s.username, s.password)
        except BaseException:
            conn.close()
            raise
        log.info("%s: connected (tls=%s)", self._where, s.tls)
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _translate(self, exc: Exception, mail: OutgoingMail) -> TransportError:
        """Map an smtplib/socket/ssl fault onto the contract; drop the connection unless it is sound."""
        what = f"{self._where}: {mail.kind} {mail.message_id}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [code for code, _ in exc.recipients.values()]
            kind = TransportError if codes and all(500 <= c < 600 for c in codes) else TransportDeferred
            return kind(f"{what}: every recipient refused: {_describe(exc.recipients)}")
        if isinstance(exc, _REFUSED_US):
            self._drop()
            reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            log.error("%s: the server refused us: %s", self._where, reply)
            return TransportUnavailable(f"{what}: refused by the server: {reply}")
        if isinstance(exc, smtplib.SMTPResponseException):
            if exc.smtp_code == 421 or not 400 <= exc.smtp_code < 600:
                self._drop()
            if 500 <= exc.smtp_code < 600:
                return TransportError(f"{what}: {exc.smtp_code} {_text(exc.smtp_error)}")
            kind = TransportUnavailable if self._connecting else TransportDeferred
            return kind(f"{what}: {exc.smtp_code} {_text(exc.smtp_error)}")
        self._drop()
        if isinstance(exc, ssl.SSLCertVerificationError):
            log.error("%s: TLS certificate not trusted: %s", self._where, exc.verify_message)
            return TransportUnavailable(f"{what}: TLS certificate not trusted: {exc.verify_message}")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            log.error("%s: %s", self._where, exc)
            return TransportUnavailable(f"{what}: {exc}")
        if self._connecting:
            return TransportUnavailable(f"{what}: {type(exc).__name__}: {exc}")
        return TransportDeferred(f"{what}: connection lost while sending: {type(exc).__name__}: {exc}")


class _OneShot:
    """The caller's ``meanwhile``, run at most once however often it is asked to."""

    __slots__ = ("_work",)

    def __init__(self, work: Callable[[], None] | None) -> None:
        self._work = work

    def run(self) -> None:
        work, self._work = self._work, None
        if work is not None:
            work()


class _Connection(smtplib.SMTP):
    """``smtplib.SMTP`` that runs ``meanwhile`` once before it reads the next reply.

    ``sendmail`` is kept whole (its error semantics are what ``_translate``
    maps); the hook only fills the wait for the MAIL reply with the caller's work.
    """

    meanwhile: Callable[[], None] | None = None

    def getreply(self) -> tuple[int, bytes]:
        work, self.meanwhile = self.meanwhile, None
        if work is not None:
            work()
        return super().getreply()


class _SslConnection(_Connection, smtplib.SMTP_SSL):
    """The same over implicit TLS (``tls = "ssl"``)."""


def _login(conn: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH PLAIN (or LOGIN) once. ``SMTP.login`` would try every mechanism in turn after a
    535, which gains nothing with a wrong password and hangs some servers mid-exchange."""
    if not conn.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("the server does not offer SMTP AUTH")
    offered = conn.esmtp_features["auth"].upper().split()
    mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
    if mechanism is None:
        raise smtplib.SMTPNotSupportedError(f"no AUTH PLAIN or LOGIN (offered: {' '.join(offered)})")
    conn.user, conn.password = username, password
    conn.auth(mechanism, conn.auth_plain if mechanism == "PLAIN" else conn.auth_login)


def _mail_options(conn: smtplib.SMTP, mail: OutgoingMail, data: bytes) -> list[str]:
    """BODY=8BITMIME for 8-bit data and SMTPUTF8 for non-ASCII addresses, when offered."""
    options: list[str] = []
    if not data.isascii() and conn.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    addresses = (mail.envelope_from, *mail.recipients)
    if not all(a.isascii() for a in addresses) and conn.has_extn("smtputf8"):
        options.append("SMTPUTF8")
    return options


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _describe(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in refused.items())
