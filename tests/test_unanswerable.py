"""A person maild cannot write back to still gets a ticket; only the acknowledgment stays unsent, with the reason.

Through the daemon against the real Dovecot and SMTP server: a quoted local
part, a non-ASCII local part (RFC 6532) and a message with no From at all
are recorded and open their tickets, nothing is sent to them, and ``ticket show`` and the digest say why;
a non-ASCII domain is written as IDNA and answered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.daemon_kit import daemon, db_rows, run_cli, sqlite_url
from tests.ops_kit import ops_config, request
from tests.servers import ImapAccount, SmtpCapture, seed_imap

QUESTION = "Buongiorno,\r\nvorrei sapere quali sono gli orari del servizio di assistenza.\r\nGrazie"
QUOTED = '"System Administrator"@ateneo.example.it'
NON_ASCII_LOCAL = "jdöe@ateneo.example.it"
NON_ASCII_DOMAIN = "mario.rossi@università.example.it"


def test_unanswerable_senders_get_their_ticket_and_no_reply_and_the_reason_is_shown(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    config = ops_config(tmp_path, imap_account, smtp_server, url)
    started = datetime.now(UTC) - timedelta(minutes=1)
    received = "Mon, 18 Jan 2027 09:30:00 +0100"
    no_from = request("nobody@ateneo.example.it", "Orari del servizio", QUESTION, received)[1]
    no_from = no_from.replace(b"From: <nobody@ateneo.example.it>\r\n", b"")
    seed_imap(imap_account, [*(request(sender, "Orari del servizio", QUESTION, received)[1]
                               for sender in (QUOTED, NON_ASCII_LOCAL, NON_ASCII_DOMAIN)), no_from])
    assert daemon(config)[1].run(once=True) == 0

    assert db_rows(url, "SELECT COUNT(*) FROM quarantine") == [(0,)]
    tickets = dict(db_rows(url, "SELECT requester, reference FROM tickets"))
    assert len(tickets) == 4
    assert [m.rcpt_tos for m in smtp_server.messages] == [("mario.rossi@xn--universit-y1a.example.it",)]

    quoted_ticket = next(ref for requester, ref in tickets.items() if "system administrator" in requester.lower())
    shown = run_cli(config, "ticket", "show", quoted_ticket)
    assert shown.returncode == 0, shown.stderr
    assert "acknowledgment not sendable" in shown.stdout

    digest = run_cli(config, "digest", "--since", started.isoformat(), "--print")
    assert digest.returncode == 0, digest.stderr
    assert "REPLIES NOT SENDABLE: 3" in digest.stdout
