"""The daemon's received time: the mailbox server's, never the sender's headers.

Pure rules first, then the two sources that tell it (a Maildir, the real
Dovecot's INTERNALDATE) and the daemon recording a message that claims 2000.
"""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maild.mail.maildir import MaildirSource, delivered_at
from maild.mail.parsing import parse_message
from maild.pipeline import arrival_time
from maild.poller import ImapSource
from maild.settings import Limits, Mailbox
from tests.daemon_kit import FakeClock, daemon, db_rows, imap_table, smtp_table, sqlite_url, write_config
from tests.factories import TRUSTED, message
from tests.servers import ImapAccount, SmtpCapture

SERVER = datetime(2027, 5, 17, 9, 30, tzinfo=UTC)
NOW = SERVER + timedelta(seconds=5)


@pytest.mark.parametrize(("received_by", "stamp", "expected", "why"), [
    # our receiving server's stamp, a few minutes before delivery into the mailbox: the earlier, truer time
    (TRUSTED, SERVER - timedelta(minutes=3), SERVER - timedelta(minutes=3), f"added by {TRUSTED}"),
    # a stamp by anyone else is the sender's word
    ("mail.ateneo.example.it", SERVER - timedelta(minutes=3), SERVER, "mailbox server"),
    # our own stamp, but too long before the mailbox server's time: not believed
    (TRUSTED, SERVER - timedelta(hours=2), SERVER, "mailbox server"),
    (TRUSTED, datetime(2000, 1, 1, tzinfo=UTC), SERVER, "mailbox server"),
    (TRUSTED, SERVER + timedelta(minutes=1), SERVER, "mailbox server"),  # in the daemon's future
    (TRUSTED, SERVER + timedelta(seconds=3), SERVER + timedelta(seconds=3), "added by"),  # clocks a little apart
    ("", None, SERVER, "mailbox server"),
])
def test_the_received_time_is_the_server_s_or_our_own_stamp_within_bounds(
    received_by: str, stamp: datetime | None, expected: datetime, why: str,
) -> None:
    parsed = message(received_by=received_by, received_at=stamp, date=datetime(2000, 1, 1, tzinfo=UTC))
    at, reason = arrival_time(parsed, SERVER, NOW, (TRUSTED,))
    assert at == expected
    assert reason.startswith("received time: ") and why in reason


def test_without_a_server_time_it_is_when_maild_read_it_and_never_in_the_future() -> None:
    parsed = message(received_at=datetime(2000, 1, 1, tzinfo=UTC))
    assert arrival_time(parsed, None, NOW, (TRUSTED,)) == (NOW, "received time: when maild read it (the "
                                                                "mailbox gave no time)")
    assert arrival_time(parsed, NOW + timedelta(days=1), NOW, (TRUSTED,))[0] == NOW


def test_the_host_that_added_the_topmost_received_header_is_read() -> None:
    raw = (b"Received: from mail.ateneo.example.it (mail.ateneo.example.it [192.0.2.7])\r\n"
           b"\tby MX.Servizi.Example.IT (Postfix) with ESMTPS id 4Z; Mon, 17 May 2027 11:27:00 +0200\r\n"
           b"Received: from evil by mx.servizi.example.it; Sat, 1 Jan 2000 00:00:00 +0000\r\n"
           b"From: a@ateneo.example.it\r\nSubject: x\r\n\r\nbody\r\n")
    parsed = parse_message(raw, Limits())
    assert parsed.received_by == "mx.servizi.example.it"
    assert parsed.received_at == datetime(2027, 5, 17, 9, 27, tzinfo=UTC)
    assert parse_message(b"From: a@b.example\r\n\r\nx\r\n", Limits()).received_by == ""


# ---------------------------------------------------------------- the sources


def test_a_maildir_message_arrived_when_it_was_delivered(tmp_path: Path) -> None:
    box = tmp_path / "inbox"
    for sub in ("new", "cur", "tmp", ".Processed/new", ".Processed/cur", ".Processed/tmp",
                ".Quarantine/new", ".Quarantine/cur", ".Quarantine/tmp"):
        (box / sub).mkdir(parents=True)
    delivered = int(SERVER.timestamp())
    named = box / "new" / f"{delivered}.M1P2.host"
    named.write_bytes(b"From: a@b.example\r\n\r\nx\r\n")
    os.utime(named, (delivered - 3600, delivered - 3600))  # an mtime older than the name: the name wins
    dropped = box / "new" / "dropped.eml"
    dropped.write_bytes(b"From: c@d.example\r\n\r\ny\r\n")
    os.utime(dropped, (delivered + 60, delivered + 60))
    source = MaildirSource.from_settings(Mailbox(kind="maildir", path=box))
    arrivals = {item.source_id: item.arrived_at for item in source.fetch(1 << 20)}
    assert arrivals == {f"{delivered}.M1P2.host": SERVER, "dropped.eml": SERVER + timedelta(seconds=60)}
    # a file moved in with an old name keeps its later mtime: nothing is dated back
    assert delivered_at("946684800.M1.host", SERVER.timestamp()) == SERVER


@pytest.mark.servers
def test_dovecot_s_internaldate_is_the_arrival_time(imap_account: ImapAccount) -> None:
    raw = (b"Received: from x by mx.elsewhere.example; Sat, 1 Jan 2000 00:00:00 +0000\r\n"
           b"Date: Sat, 1 Jan 2000 00:00:00 +0000\r\nFrom: a@b.example\r\nSubject: old\r\n\r\nx\r\n")
    with imap_account.connect() as client:
        client.append("INBOX", raw, msg_time=datetime(2026, 11, 3, 11, 30, 7, tzinfo=UTC))
    source = ImapSource(imap_account.mailbox())
    try:
        (item,) = list(source.fetch(1 << 20))
    finally:
        source.close()
    assert item.arrived_at == datetime(2026, 11, 3, 11, 30, 7, tzinfo=UTC)
    assert pickle.loads(pickle.dumps(item)) == item  # it crosses to the triage worker


@pytest.mark.servers
def test_the_daemon_dates_a_message_by_the_server_not_by_its_headers(
    tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture,
) -> None:
    """A message whose headers claim 2000 is received when Dovecot took it in, and numbered in the
    year it was recorded; our own MX's stamp a minute earlier is the received time of the other."""
    old = (b"Received: from x by mx.elsewhere.example; Sat, 1 Jan 2000 09:00:00 +0000\r\n"
           b"Date: Sat, 1 Jan 2000 09:00:00 +0000\r\nFrom: Mario Rossi <mario.rossi@ateneo.example.it>\r\n"
           b"To: helpdesk-posta@servizi.example.it\r\nMessage-ID: <old.2000@ateneo.example.it>\r\n"
           b"Subject: Domanda\r\n\r\nBuongiorno, come configuro la posta sul telefono? Grazie\r\n")
    ours = old.replace(b"by mx.elsewhere.example; Sat, 1 Jan 2000 09:00:00 +0000",
                       f"by {TRUSTED}; Tue, 03 Nov 2026 10:59:00 +0100".encode()) \
        .replace(b"<old.2000@", b"<ours.2026@")
    internal = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)  # 11:00 in Rome, a Tuesday in service hours (and past:
    # Dovecot keeps an APPEND date only when it is not in the future)
    with imap_account.connect() as client:
        client.append("INBOX", old, msg_time=internal)
        client.append("INBOX", ours, msg_time=internal)
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(imap_account), smtp=smtp_table(smtp_server),
                          database_url=sqlite_url(tmp_path))
    _, d = daemon(config, FakeClock(internal + timedelta(seconds=30)))
    assert d.run(once=True) == 0
    rows = db_rows(sqlite_url(tmp_path), "SELECT t.reference, m.message_id, m.received_at FROM messages m "
                                          "JOIN tickets t ON t.id = m.ticket_id ORDER BY m.message_id")
    received = {mid: datetime.fromisoformat(str(at)).replace(tzinfo=UTC) for _, mid, at in rows}
    assert received == {"<old.2000@ateneo.example.it>": internal,
                        "<ours.2026@ateneo.example.it>": internal - timedelta(minutes=1)}
    assert all(ref.startswith("HD-2026-") for ref, _, _ in rows)
