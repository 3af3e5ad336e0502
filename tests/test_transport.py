"""SmtpTransport against an in-process aiosmtpd server (no external servers needed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from maild.daemon.outbox.transport import SmtpTransport, make_transport
from maild.errors import TransportDeferred, TransportError, TransportUnavailable
from maild.records import OutgoingMail
from maild.settings import Smtp
from tests.factories import settings
from tests.servers import SmtpCapture, self_signed_tls, server_tls_context, wait_until

RCPT = "referente.tecnico@ateneo.example.it"


def ack(n: int = 1, *, recipients: tuple[str, ...] = (RCPT,), envelope_from: str = "",
        body: bytes = b"Gentile utente,\r\nabbiamo ricevuto la richiesta.\r\n") -> OutgoingMail:
    data = (b"From: Help Desk <helpdesk-posta@servizi.example.it>\r\nTo: " + recipients[0].encode()
            + b"\r\nSubject: Presa in carico\r\nMessage-ID: <ack-" + str(n).encode()
            + b"@servizi.example.it>\r\nAuto-Submitted: auto-replied\r\n\r\n" + body)
    return OutgoingMail(kind="ack", message_id=f"<ack-{n}@servizi.example.it>", envelope_from=envelope_from,
                        recipients=recipients, data=data)


def smtp_settings(server: SmtpCapture, **changes: Any) -> Smtp:
    values: dict[str, Any] = {"kind": "smtp", "host": server.host, "port": server.port, "tls": "none",
                              "timeout": 10.0}
    values.update(changes)
    return Smtp(**values)


@pytest.fixture
def transport(smtp_server: SmtpCapture) -> Iterator[SmtpTransport]:
    sender = SmtpTransport(smtp_settings(smtp_server))
    yield sender
    sender.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- delivery


def test_automatic_reply_goes_out_with_the_null_envelope_sender(
    smtp_server: SmtpCapture, transport: SmtpTransport
) -> None:
    mail = ack(recipients=(RCPT, "delegato.sistemi@ateneo.example.it"))
    transport.send(mail)
    (got,) = smtp_server.messages
    assert got.mail_from == "<>"  # MAIL FROM:<> (RFC 3834), not a missing sender
    assert got.rcpt_tos == mail.recipients
    assert got.data == mail.data


def test_a_named_envelope_sender_is_used_as_given(smtp_server: SmtpCapture, transport: SmtpTransport) -> None:
    transport.send(ack(envelope_from="helpdesk-posta@servizi.example.it"))
    assert [m.mail_from for m in smtp_server.messages] == ["helpdesk-posta@servizi.example.it"]


def test_one_connection_serves_many_replies(smtp_server: SmtpCapture, transport: SmtpTransport) -> None:
    for n in range(5):
        transport.send(ack(n))
    peers = {m.peer for m in smtp_server.messages}
    assert len(smtp_server.messages) == 5 and len(peers) == 1


def test_bare_line_feeds_are_sent_as_crlf(smtp_server: SmtpCapture, transport: SmtpTransport) -> None:
    mail = OutgoingMail(kind="digest", message_id="<d@x>", envelope_from="", recipients=(RCPT,),
                        data=b"Subject: digest\n\nriga uno\nriga due\n")
    transport.send(mail)
    assert smtp_server.messages[0].data == b"Subject: digest\r\n\r\nriga uno\r\nriga due\r\n"


def test_eight_bit_data_is_announced(smtp_server: SmtpCapture, transport: SmtpTransport) -> None:
    transport.send(ack(body="Cordialità, l'Help Desk\r\n".encode()))
    assert "BODY=8BITMIME" in smtp_server.messages[0].mail_options


# ---------------------------------------------------------------- server down and back


def test_server_down_is_transient_and_the_next_send_after_restart_succeeds(
    smtp_server: SmtpCapture, transport: SmtpTransport
) -> None:
    transport.send(ack(1))
    smtp_server.stop()
    with pytest.raises(TransportUnavailable):
        transport.send(ack(2))
    assert not transport.connected
    with pytest.raises(TransportUnavailable):
        transport.send(ack(2))  # still down: a fresh connection is refused too
    smtp_server.start()
    transport.send(ack(2))
    assert [m.data for m in smtp_server.messages] == [ack(1).data, ack(2).data]


def test_a_dropped_connection_is_replaced_once_without_an_error(
    smtp_server: SmtpCapture, transport: SmtpTransport
) -> None:
    transport.send(ack(1))
    smtp_server.restart()  # drops the connection the transport holds
    transport.send(ack(2))
    first, second = smtp_server.messages
    assert first.peer != second.peer


def test_idle_connection_is_checked_with_noop_before_reuse(smtp_server: SmtpCapture) -> None:
    clock = FakeClock()
    sender = SmtpTransport(smtp_settings(smtp_server), clock=clock, noop_after=30.0)
    try:
        sender.send(ack(1))
        clock.now += 31.0
        sender.send(ack(2))  # NOOP answered: same connection
        clock.now += 31.0
        smtp_server.restart()
        sender.send(ack(3))  # NOOP failed: new connection, no retry needed
    finally:
        sender.close()
    peers = [m.peer for m in smtp_server.messages]
    assert peers[0] == peers[1] != peers[2]


def test_meanwhile_runs_while_the_server_holds_the_mail_command(
    smtp_server: SmtpCapture, transport: SmtpTransport
) -> None:
    transport.send(ack(1))
    seen: list[tuple[bool, int]] = []

    def meanwhile() -> None:  # the sender marks the previous reply sent here
        arrived = wait_until(lambda: smtp_server.mail_commands == 2, 10.0)
        seen.append((arrived, len(smtp_server.messages)))

    transport.send(ack(2), meanwhile=meanwhile)
    assert seen == [(True, 1)]  # once, after this reply's MAIL reached the server, before its data did
    assert [m.data for m in smtp_server.messages] == [ack(1).data, ack(2).data]


def test_meanwhile_runs_even_when_the_server_is_down(smtp_server: SmtpCapture, transport: SmtpTransport) -> None:
    smtp_server.stop()
    ran: list[int] = []
    with pytest.raises(TransportUnavailable):
        transport.send(ack(1), meanwhile=lambda: ran.append(1))
    assert ran == [1]


def test_a_failing_meanwhile_stops_the_reply_and_the_next_one_starts_afresh(
    smtp_server: SmtpCapture, transport: SmtpTransport
) -> None:
    transport.send(ack(1))

    def broken() -> None:
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError, match="database gone"):
        transport.send(ack(2), meanwhile=broken)
    assert not transport.connected  # the session stopped between MAIL and its reply: not reused
    transport.send(ack(3))
    assert [m.data for m in smtp_server.messages] == [ack(1).data, ack(3).data]


# ---------------------------------------------------------------- refusals


def test_every_recipient_refused_permanently_is_a_permanent_error(
    smtp_server: SmtpCapture, transport: SmtpTransport
) -> None:
    smtp_server.refuse_rcpt(RCPT, "550 5.1.1 No such user")
    with pytest.raises(TransportError, match="550") as caught:
        transport.send(ack())
    assert not isinstance(caught.value, TransportUnavailable)
    transport.send(ack(2, recipients=("other@ateneo.example.it",)))  # the connection is still good
    assert len(smtp_server.messages) == 1


def test_a_temporary_recipient_refusal_is_transient(
    smtp_server: SmtpCapture, transport: SmtpTransport
) -> None:
    smtp_server.refuse_rcpt(RCPT, "450 4.2.1 Mailbox busy")
    with pytest.raises(TransportDeferred, match="450"):  # this reply alone
        transport.send(ack())
    transport.send(ack(2, recipients=("other@ateneo.example.it",)))  # the connection goes on
    assert len(smtp_server.messages) == 1


def test_partly_refused_recipients_still_count_as_sent(
    smtp_server: SmtpCapture, transport: SmtpTransport
) -> None:
    smtp_server.refuse_rcpt("gone@ateneo.example.it", "550 5.1.1 No such user")
    transport.send(ack(recipients=(RCPT, "gone@ateneo.example.it")))
    assert [m.rcpt_tos for m in smtp_server.messages] == [(RCPT,)]


@pytest.mark.parametrize(("reply", "permanent"), [("554 5.6.0 Content rejected", True),
                                                  ("451 4.3.0 Try later", False)])
def test_refused_data_follows_the_reply_class(
    smtp_server: SmtpCapture, transport: SmtpTransport, reply: str, permanent: bool
) -> None:
    smtp_server.refuse_data(reply)
    with pytest.raises(TransportError, match=reply[:3]) as caught:
        transport.send(ack())
    assert isinstance(caught.value, TransportDeferred) is not permanent  # for now: this reply alone
    assert transport.connected


def test_a_connection_dropped_under_a_reply_defers_it_alone(smtp_server: SmtpCapture,
                                                            transport: SmtpTransport) -> None:
    smtp_server.refuse_data("421 4.3.2 closing")
    with pytest.raises(TransportDeferred, match="421"):
        transport.send(ack(1))
    assert not transport.connected
    smtp_server.refuse_data(None)
    transport.send(ack(2))  # a new connection at once
    assert [m.data for m in smtp_server.messages] == [ack(2).data]


def test_a_server_out_of_reach_concerns_every_reply(smtp_server: SmtpCapture, transport: SmtpTransport) -> None:
    smtp_server.stop()
    with pytest.raises(TransportUnavailable) as caught:
        transport.send(ack())
    assert not isinstance(caught.value, TransportDeferred)


def test_a_reply_without_recipients_is_refused_before_connecting(transport: SmtpTransport) -> None:
    with pytest.raises(TransportError, match="no recipients"):
        transport.send(dataclasses.replace(ack(), recipients=()))
    assert not transport.connected


# ---------------------------------------------------------------- TLS and AUTH


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_tls(tmp_path_factory.mktemp("tls"))


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"maild", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def starttls_server(tls_files: tuple[Path, Path]) -> Iterator[SmtpCapture]:
    server = SmtpCapture(tls_context=server_tls_context(*tls_files), require_starttls=True,
                         authenticator=authenticate, auth_require_tls=True)
    server.start()
    yield server
    server.stop()


def test_starttls_with_verified_certificate_and_auth(
    starttls_server: SmtpCapture, tls_files: tuple[Path, Path]
) -> None:
    sender = SmtpTransport(smtp_settings(starttls_server, tls="starttls", ca_file=tls_files[0],
                                         username="maild", password="s3cret"))
    try:
        sender.send(ack())
    finally:
        sender.close()
    assert len(starttls_server.messages) == 1


def test_wrong_smtp_password_keeps_the_reply_for_later(
    starttls_server: SmtpCapture, tls_files: tuple[Path, Path]
) -> None:
    sender = SmtpTransport(smtp_settings(starttls_server, tls="starttls", ca_file=tls_files[0],
                                         username="maild", password="wrong"))
    with pytest.raises(TransportUnavailable, match="535"):
        sender.send(ack())
    assert starttls_server.messages == []


def test_untrusted_smtp_certificate_keeps_the_reply_for_later(starttls_server: SmtpCapture) -> None:
    sender = SmtpTransport(smtp_settings(starttls_server, tls="starttls", username="maild",
                                         password="s3cret"))
    with pytest.raises(TransportUnavailable, match="certificate"):
        sender.send(ack())


def test_implicit_tls(tls_files: tuple[Path, Path]) -> None:
    server = SmtpCapture(ssl_context=server_tls_context(*tls_files))
    server.start()
    sender = SmtpTransport(smtp_settings(server, tls="ssl", ca_file=tls_files[0]))
    try:
        sender.send(ack())
    finally:
        sender.close()
        server.stop()
    assert len(server.messages) == 1


def test_make_transport_builds_the_smtp_transport() -> None:
    built = make_transport(settings(smtp={"kind": "smtp", "host": "127.0.0.1", "port": 2525}))
    assert isinstance(built, SmtpTransport)
    assert not built.connected  # connects on the first send, not when built
