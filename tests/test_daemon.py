"""The daemon against the real servers: Dovecot, an SMTP server, SQLite and PostgreSQL.

These are the acceptance tests of exactly-once intake: mixed load, crashes at
random moments, servers going away, two daemons at once, threads, UIDVALIDITY
changes, oversize, poison and hostile messages, and out-of-hours take-in.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maild.daemon import loop as daemon_module
from maild.daemon.loop import EXIT_PENDING, READ_AT_LEAST_EVERY
from maild.errors import SourceUnavailable
from maild.poller import ImapSource, open_client
from maild.records import Disposition, ParsedMessage
from maild.settings import Mailbox
from maild.sources import Incoming, MailSource
from tests import hostile
from tests.daemon_kit import (
    FakeClock,
    classify_reply,
    daemon,
    db_rows,
    duplicates,
    imap_table,
    replies_by_original,
    run_cli,
    smtp_table,
    spawn_daemon,
    sqlite_url,
    write_config,
)
from tests.factories import REFERENTE
from tests.mailgen import Sample, corpus_mix, fresh_copy
from tests.servers import ImapAccount, PrivateDovecot, SmtpCapture, folder_counts, seed_imap, wait_until

DATABASES = ("sqlite", "postgresql")
Seeder = Callable[[ImapAccount, list[bytes]], None]


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url


def config_for(tmp_path: Path, account: ImapAccount, smtp: SmtpCapture, url: str, **mailbox: Any) -> Path:
    limits = mailbox.pop("limits", None)
    return write_config(tmp_path / "maild.toml", mailbox=imap_table(account, **mailbox), smtp=smtp_table(smtp),
                        database_url=url, limits=limits)


def check_replies(samples: list[Sample], url: str, smtp: SmtpCapture) -> None:
    """Every accepted or rejected message: exactly one reply, to its From; ignored: none."""
    decided = dict(db_rows(url, "SELECT message_id, decision FROM messages"))
    replies = replies_by_original(smtp.messages)
    for sample in samples:
        got = replies.get(sample.message_id, [])
        if decided[sample.message_id] == "ignored" or sample.decision == "ignored":
            assert decided[sample.message_id] == "ignored", sample
            assert got == [], (sample.name, got)
        else:
            assert len({r.message_id for r in got}) == 1, (sample.name, got)
            assert all(r.mail_from == "<>" for r in got)  # RFC 3834 null envelope sender
    notices = [r for r in map(classify_reply, smtp.messages) if r.kind == "notice"]
    rejected = sum(1 for d in decided.values() if d == "rejected")
    assert len({n.message_id for n in notices}) == rejected


def check_tickets(url: str, expected_messages: int) -> None:
    """One record per message; one ticket per message that is not ignored, and none else."""
    rows = db_rows(url, "SELECT decision, ticket_id, kind FROM messages")
    assert len(rows) == expected_messages
    with_ticket = [r for r in rows if r[0] != "ignored"]
    assert all(r[1] is not None for r in with_ticket)
    assert all(r[1] is None for r in rows if r[0] == "ignored")
    tickets = db_rows(url, "SELECT COUNT(*) FROM tickets")[0][0]
    assert tickets == len({r[1] for r in with_ticket}) == len(with_ticket)


# --------------------------------------------------------------------------- 1. mixed load


def test_500_mixed_messages(tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture,
                            db_url: str) -> None:
    samples = corpus_mix(500)
    seed_imap(imap_account, [s.raw for s in samples])
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, db_url))
    assert d.run(once=True) == 0
    assert folder_counts(imap_account) == {"INBOX": 0, "Processed": 500, "Quarantine": 0}
    check_tickets(db_url, 500)
    check_replies(samples, db_url, smtp_server)
    assert duplicates(smtp_server.messages) == {}
    # Connections are reused: the sender process's, and the daemon's own once the mailbox is drained
    # (it sends beside the sender process what is still queued).
    assert len({m.peer for m in smtp_server.messages}) <= 2


# --------------------------------------------------------------------------- 2. SIGKILL at random moments


def test_sigkill_five_times_while_draining_2000(tmp_path: Path, imap_account: ImapAccount,
                                                smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    samples = corpus_mix(2000, tag="kill")
    seed_imap(imap_account, [s.raw for s in samples])
    config = config_for(tmp_path, imap_account, smtp_server, url)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    log = tmp_path / "daemon.log"
    for _ in range(5):
        process = spawn_daemon(config, log=log)
        time.sleep(rng.uniform(1.0, 4.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    done = run_cli(config, "run", "--once")
    assert done.returncode == 0, done.stderr[-3000:]
    assert folder_counts(imap_account)["INBOX"] == 0
    check_tickets(url, 2000)
    check_replies(samples, url, smtp_server)
    # The only duplicates allowed come from the 250-to-commit window: same Message-ID, at most one per kill.
    dups = duplicates(smtp_server.messages)
    print(f"seed {seed}: duplicates from the 250-to-commit window: {dups}")
    assert sum(n - 1 for n in dups.values()) <= 5


# --------------------------------------------------------------------------- 3. servers going away


def test_dovecot_restarted_mid_run(tmp_path: Path, private_dovecot: PrivateDovecot, smtp_server: SmtpCapture) -> None:
    imap_account = private_dovecot.new_account()
    url = sqlite_url(tmp_path)
    samples = corpus_mix(600, tag="restart")
    seed_imap(imap_account, [s.raw for s in samples])
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, url))
    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        assert wait_until(lambda: db_rows(url, "SELECT COUNT(*) FROM messages")[0][0] >= 50, 120)
        private_dovecot.stop()
        time.sleep(2)
        private_dovecot.start()
        assert wait_until(lambda: db_rows(url, "SELECT COUNT(*) FROM messages")[0][0] == 600, 300)
        assert wait_until(lambda: folder_counts(imap_account)["INBOX"] == 0, 120)
        pending = "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')"
        assert wait_until(lambda: db_rows(url, pending)[0][0] == 0, 120)
    finally:
        d.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    check_tickets(url, 600)
    check_replies(samples, url, smtp_server)


def test_smtp_down_delays_replies_never_loses_them(tmp_path: Path, imap_account: ImapAccount,
                                                   smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    samples = corpus_mix(60, tag="smtpdown")
    seed_imap(imap_account, [s.raw for s in samples])
    config = config_for(tmp_path, imap_account, smtp_server, url)
    smtp_server.stop()
    clock = FakeClock(datetime.now(UTC))
    _, d = daemon(config, clock)
    assert d.run(once=True) == EXIT_PENDING
    queued = db_rows(url, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'")[0][0]
    assert queued > 0 and smtp_server.messages == []
    smtp_server.start()
    clock.advance(timedelta(hours=1))  # past any backoff
    _, again = daemon(config, clock)
    assert again.run(once=True) == 0
    assert len(smtp_server.messages) == queued
    check_replies(samples, url, smtp_server)


# --------------------------------------------------------------------------- 4. two daemons


def test_two_daemons_one_mailbox_one_postgresql(tmp_path: Path, imap_account: ImapAccount,
                                                smtp_server: SmtpCapture, pg_url: str) -> None:
    samples = corpus_mix(400, tag="twin")
    seed_imap(imap_account, [s.raw for s in samples])
    config = config_for(tmp_path, imap_account, smtp_server, pg_url)
    assert run_cli(config, "db", "upgrade").returncode == 0
    first = spawn_daemon(config, "--once", log=tmp_path / "a.log")
    second = spawn_daemon(config, "--once", log=tmp_path / "b.log")
    assert first.wait(timeout=600) == 0, (tmp_path / "a.log").read_text()[-3000:]
    assert second.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()[-3000:]
    assert folder_counts(imap_account)["INBOX"] == 0
    check_tickets(pg_url, 400)
    check_replies(samples, pg_url, smtp_server)
    assert duplicates(smtp_server.messages) == {}


# ----------------------------------------------------- 5. threads, UIDVALIDITY, oversize, poison, hostile


def _reply_to(original: bytes, our_message_id: str | None, subject: str, sender: str) -> bytes:
    headers = [f"From: <{sender}>", "To: helpdesk-posta@servizi.example.it", f"Subject: {subject}",
               "Date: Tue, 12 Jan 2027 11:00:00 +0100"]
    if our_message_id:
        headers += [f"In-Reply-To: {our_message_id}", f"References: {our_message_id}"]
    body = "Grazie, aggiungo che il numero di telefono corretto è 010 1234567.\r\n"
    _, raw = fresh_copy(("\r\n".join(headers) + "\r\n\r\n" + body).encode(), "followup")
    return raw


def test_followups_thread_and_foreign_tags_open_new_tickets(tmp_path: Path, imap_account: ImapAccount,
                                                            smtp_server: SmtpCapture, db_url: str) -> None:
    first = next(s for s in corpus_mix(60, tag="thread") if s.name == "d030.eml")  # terse quota request
    seed_imap(imap_account, [first.raw])
    config = config_for(tmp_path, imap_account, smtp_server, db_url)
    _, d = daemon(config)
    assert d.run(once=True) == 0
    ack = classify_reply(smtp_server.messages[0])
    requester = ack.to
    tag = ack.subject[ack.subject.rindex("["):]
    seed_imap(imap_account, [
        _reply_to(first.raw, ack.message_id, f"Re: {ack.subject}", requester),          # by In-Reply-To
        _reply_to(first.raw, None, f"Ancora {tag}", requester),                         # by tag, from the requester
        _reply_to(first.raw, None, f"Re: {tag} anche per me", "altro.utente@ateneo.example.it"),  # foreign tag
    ])
    _, d = daemon(config)
    assert d.run(once=True) == 0
    kinds = sorted(r[0] for r in db_rows(db_url, "SELECT kind FROM messages"))
    assert kinds == ["followup", "followup", "new", "new"]
    assert db_rows(db_url, "SELECT COUNT(*) FROM tickets")[0][0] == 2
    assert len(smtp_server.messages) == 2  # the first ack and the foreign sender's ack, nothing for follow-ups


def test_privileged_followup_is_authorized_like_any_request(tmp_path: Path, imap_account: ImapAccount,
                                                            smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    first = next(s for s in corpus_mix(60, tag="priv") if s.name == "d030.eml")
    seed_imap(imap_account, [first.raw])
    config = config_for(tmp_path, imap_account, smtp_server, url)
    assert daemon(config)[1].run(once=True) == 0
    ack = classify_reply(smtp_server.messages[0])
    body = "Per favore resettate la password della casella del direttore, l'ha dimenticata.\r\n"
    raw = (f"From: <{ack.to}>\r\nTo: helpdesk-posta@servizi.example.it\r\nSubject: Re: {ack.subject}\r\n"
           f"In-Reply-To: {ack.message_id}\r\nMessage-ID: <p1@ateneo.example.it>\r\n"
           f"Date: Tue, 12 Jan 2027 11:00:00 +0100\r\n\r\n{body}").encode()
    seed_imap(imap_account, [raw])
    assert daemon(config)[1].run(once=True) == 0
    rows = db_rows(url, "SELECT kind, decision, category FROM messages WHERE message_id = '<p1@ateneo.example.it>'")
    assert rows == [("followup", "rejected", "password_reset")]
    kinds = [classify_reply(m) for m in smtp_server.messages[1:]]
    assert {r.kind for r in kinds} == {"reply", "notice"}
    assert any(r.to == REFERENTE for r in kinds)


def test_copied_back_and_uidvalidity_change_are_not_processed_again(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    samples = corpus_mix(30, tag="uidv")
    with imap_account.connect() as client:
        client.create_folder("Helpdesk")
    seed_imap(imap_account, [s.raw for s in samples], folder="Helpdesk")
    config = config_for(tmp_path, imap_account, smtp_server, url, folder="Helpdesk")
    assert daemon(config)[1].run(once=True) == 0
    sent = len(smtp_server.messages)
    with imap_account.connect() as client:  # copied back, then the folder recreated: new UIDVALIDITY
        client.select_folder("Processed")
        client.copy(client.search(["ALL"]), "Helpdesk")
        before = client.folder_status("Helpdesk", ["UIDVALIDITY"])[b"UIDVALIDITY"]
        client.delete_folder("Helpdesk")
        client.create_folder("Helpdesk")
        after = client.folder_status("Helpdesk", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert before != after
    seed_imap(imap_account, [s.raw for s in samples], folder="Helpdesk")
    with imap_account.connect() as client:
        client.select_folder("Processed")
        client.copy(client.search(["ALL"])[:10], "Helpdesk")
    assert daemon(config)[1].run(once=True) == 0
    assert db_rows(url, "SELECT COUNT(*) FROM messages")[0][0] == 30
    assert len(smtp_server.messages) == sent
    with imap_account.connect() as client:
        assert client.folder_status("Helpdesk", ["MESSAGES"])[b"MESSAGES"] == 0


def test_oversize_message_is_quarantined_without_download(tmp_path: Path, imap_account: ImapAccount,
                                                           smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    small = corpus_mix(3, tag="small")
    _, big = fresh_copy(small[0].raw.replace(b"\r\n\r\n", b"\r\n\r\n" + b"x" * 76 * 3000 + b"\r\n", 1), "big")
    seed_imap(imap_account, [small[0].raw, big, small[1].raw, small[2].raw])
    config = config_for(tmp_path, imap_account, smtp_server, url, limits={"max_message_bytes": 100_000})
    assert daemon(config)[1].run(once=True) == 0
    assert folder_counts(imap_account) == {"INBOX": 0, "Processed": 3, "Quarantine": 1}
    entries = db_rows(url, "SELECT size, error, raw IS NULL FROM quarantine")
    assert len(entries) == 1 and entries[0][0] > 100_000 and "max_message_bytes" in entries[0][1] and entries[0][2]
    listing = run_cli(config, "quarantine", "list", "--json")
    assert listing.returncode == 0 and "max_message_bytes" in listing.stdout


def test_poison_message_is_quarantined_and_the_rest_go_on(tmp_path: Path, imap_account: ImapAccount,
                                                          smtp_server: SmtpCapture, monkeypatch: Any) -> None:
    url = sqlite_url(tmp_path)
    samples = corpus_mix(12, tag="poison")
    seed_imap(imap_account, [s.raw for s in samples])
    config = config_for(tmp_path, imap_account, smtp_server, url)
    _, d = daemon(config)
    d.parallel_triage = False  # the fault is patched into this process, not into a triage worker
    poison = samples[4].message_id
    original = type(d.intake.triager).decide

    def decide(self: Any, message: ParsedMessage, **given: Any) -> Disposition:
        if message.message_id == poison:
            raise RuntimeError("a stage blew up")
        return original(self, message, **given)

    monkeypatch.setattr(type(d.intake.triager), "decide", decide)
    assert d.run(once=True) == 0
    assert folder_counts(imap_account) == {"INBOX": 0, "Processed": 11, "Quarantine": 1}
    (entry_id, error), = db_rows(url, "SELECT id, error FROM quarantine")
    assert "a stage blew up" in error
    # A retry while the fault is still there puts it back in quarantine, and the run still ends.
    assert run_cli(config, "quarantine", "retry", str(entry_id)).returncode == 0
    assert d.run(once=True) == 0
    assert db_rows(url, "SELECT id, state FROM quarantine") == [(entry_id, "quarantined")]
    # The operator retries it once the fault is fixed: it is recorded like any other.
    monkeypatch.setattr(type(d.intake.triager), "decide", original)
    assert run_cli(config, "quarantine", "retry", str(entry_id)).returncode == 0
    assert daemon(config)[1].run(once=True) == 0
    assert db_rows(url, f"SELECT COUNT(*) FROM messages WHERE message_id = '{poison}'")[0][0] == 1
    assert db_rows(url, "SELECT state FROM quarantine") == [("retried",)]


def hostile_shapes() -> dict[str, bytes]:
    """Every hostile shape of the triage issue, each with a Message-ID of its own."""
    shapes = {
        "nested": hostile.nested_multiparts(), "many_parts": hostile.many_parts(),
        "encoded_subject": hostile.malformed_encoded_subject(), "huge_header": hostile.huge_header(),
        "unknown_charset": hostile.broken_charset("x-no-such-charset"),
        "unicode_escape": hostile.broken_charset("unicode-escape"), "rot13": hostile.broken_charset("rot13"),
        "base64": hostile.broken_base64(), "quoted_printable": hostile.broken_quoted_printable(),
        "year_99999": hostile.absurd_date("Fri, 30 Feb 99999 25:61:61 +9999"),
        "injection": hostile.header_injection(), "nul": hostile.nul_bytes(), "8bit": hostile.eight_bit_headers(),
        "rfc822_8bit": hostile.rfc822_with_8bit(), "attachment_25mb": hostile.big_attachment(),
        "html_bomb": hostile.html_bomb(), "ambiguous_from": hostile.ambiguous_from('"a@b.it" <c@d.it> (x (y))'),
    }
    return {name: fresh_copy(raw, name)[1] for name, raw in shapes.items()}


def test_hostile_mailbox_drains(tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture,
                                db_url: str) -> None:
    shapes = hostile_shapes()
    seed_imap(imap_account, list(shapes.values()))
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, db_url))
    assert d.run(once=True) == 0
    counts = folder_counts(imap_account)
    assert counts["INBOX"] == 0
    recorded = db_rows(db_url, "SELECT COUNT(*) FROM messages")[0][0]
    quarantined = db_rows(db_url, "SELECT COUNT(*) FROM quarantine")[0][0]
    assert recorded + quarantined == len(shapes) == counts["Processed"] + counts["Quarantine"]


# --------------------------------------------------------------------------- 6. out-of-hours take-in


def _request(sender: str, subject: str, body: str, received: str, *, authenticated: bool) -> bytes:
    auth = ("Authentication-Results: mx.servizi.example.it; dkim=pass header.d=ateneo.example.it;"
            " dmarc=pass header.from=ateneo.example.it\r\n") if authenticated else ""
    _, raw = fresh_copy((
        f"{auth}Received: from smtp-out.ateneo.example.it by mx.servizi.example.it; {received}\r\n"
        f"From: <{sender}>\r\nTo: helpdesk-posta@servizi.example.it\r\nSubject: {subject}\r\n"
        f"Date: {received}\r\n\r\n{body}\r\n").encode(), "ooh")
    return raw


def test_out_of_hours_backlog_is_taken_in_at_the_next_opening_in_priority_order(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, db_url: str) -> None:
    messages = [  # received Saturday 16 January 2027 after 14:00 (closed), in this order
        _request("mario.rossi@ateneo.example.it", "Domanda", "Che orari ha il servizio di assistenza?",
                 "Sat, 16 Jan 2027 14:05:00 +0100", authenticated=False),
        _request("anna.verdi@ateneo.example.it", "Telefono", "Vi chiedo di aggiornare il mio numero di telefono "
                 "in rubrica: 010 555 1234.", "Sat, 16 Jan 2027 14:10:00 +0100", authenticated=False),
        _request(REFERENTE, "Reset", "Vi chiedo il reset della password della casella di Carla Neri, "
                 "l'ha dimenticata.", "Sat, 16 Jan 2027 14:20:00 +0100", authenticated=True),
        _request(REFERENTE, "Nuova casella", "Vi chiedo di creare una nuova casella per il neoassunto "
                 "Paolo Gialli.", "Sat, 16 Jan 2027 14:30:00 +0100", authenticated=True),
    ]
    seed_imap(imap_account, messages)
    clock = FakeClock(datetime(2027, 1, 16, 15, 0, tzinfo=UTC))  # Saturday 16:00 in Rome
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, db_url), clock)
    assert d.run(once=True) == 0
    assert d.take_in_due() == 0
    monday = datetime(2027, 1, 18, 7, 0, tzinfo=UTC)  # 08:00 in Rome
    assert d.store.next_take_in_at() == monday
    clock.current = monday - timedelta(seconds=1)
    assert d.take_in_due() == 0
    clock.current = monday
    taken = d.store.due_take_ins(monday)
    assert [t.category for t in taken] == ["lifecycle", "password_reset", "anagrafica", "other"]
    assert d.take_in_due() == 4
    rows = db_rows(db_url, "SELECT category, taken_in_at FROM tickets ORDER BY id")
    assert all(r[1] is not None for r in rows)
    assert d.store.next_take_in_at() is None


def test_take_in_missed_while_down_happens_at_start(tmp_path: Path, imap_account: ImapAccount,
                                                    smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    seed_imap(imap_account, [_request("anna.verdi@ateneo.example.it", "Telefono", "Aggiornate il mio numero "
                                      "di telefono in rubrica: 010 555 1234.", "Sat, 16 Jan 2027 20:00:00 +0100",
                                      authenticated=False)])
    clock = FakeClock(datetime(2027, 1, 16, 20, 0, tzinfo=UTC))
    config = config_for(tmp_path, imap_account, smtp_server, url)
    assert daemon(config, clock)[1].run(once=True) == 0
    clock.current = datetime(2027, 1, 19, 9, 0, tzinfo=UTC)  # the daemon was down over Monday's opening
    assert daemon(config, clock)[1].run(once=True) == 0
    assert db_rows(url, "SELECT COUNT(*) FROM tickets WHERE taken_in_at IS NOT NULL")[0][0] == 1



def test_once_reports_an_unreachable_mailbox(tmp_path: Path, imap_account: ImapAccount,
                                             smtp_server: SmtpCapture) -> None:
    config = config_for(tmp_path, imap_account, smtp_server, sqlite_url(tmp_path), port=1)  # nobody listens
    done = run_cli(config, "run", "--once", timeout=300)
    assert done.returncode == EXIT_PENDING
    assert "mailbox stayed unreachable" in done.stderr


def test_running_daemon_schedules_the_take_in_job_at_the_next_opening(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture) -> None:
    url = sqlite_url(tmp_path)
    seed_imap(imap_account, [_request("anna.verdi@ateneo.example.it", "Telefono", "Aggiornate il mio numero "
                                      "di telefono in rubrica: 010 555 1234.", "Sat, 16 Jan 2027 15:00:00 +0100",
                                      authenticated=False)])
    clock = FakeClock(datetime(2027, 1, 16, 15, 0, tzinfo=UTC))  # Saturday 16:00 in Rome: closed
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, url), clock)
    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        assert wait_until(lambda: d.next_take_in_job() is not None, 60)
        assert d.next_take_in_job() == datetime(2027, 1, 18, 7, 0, tzinfo=UTC)  # Monday 08:00 in Rome
    finally:
        d.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()


# --------------------------------------------------------------------------- 7. an idle daemon


def test_an_idle_daemon_keeps_one_imap_idle_open_and_still_answers_new_mail(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, monkeypatch: Any) -> None:
    url = sqlite_url(tmp_path)
    start = datetime.now(UTC)
    clock = FakeClock(start)
    settings, d = daemon(config_for(tmp_path, imap_account, smtp_server, url), clock)
    sent: list[bytes] = []

    def connect(box: Mailbox) -> Any:
        client = open_client(box)
        send = client._imap.send

        def spy(data: bytes) -> None:
            sent.append(data)
            send(data)

        client._imap.send = spy
        return client

    d.source = source = ImapSource(settings.mailbox, connect=connect)
    waits: list[bool] = []
    wait = source.wait

    def counted(timeout: float) -> bool:
        waits.append(wait(timeout))
        return waits[-1]

    monkeypatch.setattr(source, "wait", counted)

    def last_poll() -> datetime:
        runs = d.store.daemons(start)
        return (runs[0].last_poll_at if runs else None) or start - timedelta(days=1)

    def heartbeat_due() -> bool:
        clock.advance(timedelta(seconds=11))
        return last_poll() > start

    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        assert wait_until(lambda: len(waits) >= 2, 60)  # the first slice began the IDLE
        sent.clear()
        slices = len(waits)
        assert wait_until(lambda: len(waits) >= slices + 3, 60)
        assert sent == []  # three slices, not one command
        assert wait_until(heartbeat_due, 60)  # watching without a fault counts as reading the mailbox
        sample = next(s for s in corpus_mix(20, tag="idle") if s.decision != "ignored")
        seed_imap(imap_account, [sample.raw])
        assert wait_until(lambda: folder_counts(imap_account) == {"INBOX": 0, "Processed": 1, "Quarantine": 0},
                          60)
        assert wait_until(lambda: sample.message_id in replies_by_original(smtp_server.messages), 60)
    finally:
        d.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert [line.split()[0] for line in sent[-2:]] == [b"DONE", sent[-1].split()[0]]
    assert sent[-1].split()[1] == b"LOGOUT"


class _SilentSource:
    """A mailbox that never announces mail: counts how often the daemon reads it anyway."""

    connected = True

    def __init__(self) -> None:
        self.reads = 0

    def fetch(self, max_bytes: int) -> Iterator[Incoming]:
        self.reads += 1
        return iter(())

    def wait(self, timeout: float) -> bool:
        time.sleep(0.01)
        return False

    def mark_processed(self, *items: Incoming) -> None:
        raise AssertionError("nothing was fetched")

    def quarantine(self, *items: Incoming) -> None:
        raise AssertionError("nothing was fetched")

    def close(self) -> None:
        pass


def test_an_unannounced_message_waits_a_minute_at_most(tmp_path: Path, imap_account: ImapAccount,
                                                       smtp_server: SmtpCapture) -> None:
    clock = FakeClock(datetime.now(UTC))
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, sqlite_url(tmp_path)), clock)
    d.source = source = _SilentSource()
    runner = threading.Thread(target=d.run)
    runner.start()
    try:
        assert wait_until(lambda: source.reads == 1, 60)  # read at start
        time.sleep(0.3)  # many slices, no announcement, the clock still: no read
        assert source.reads == 1
        clock.advance(READ_AT_LEAST_EVERY)
        assert wait_until(lambda: source.reads == 2, 60)  # a lost announcement costs a minute at most
        time.sleep(0.3)
        assert source.reads == 2
    finally:
        d.stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()


# --------------------------------------------------------------------------- moves by the thousand


class _CountingMoves:
    """The real IMAP source, with the size of every move it is asked for counted; its first pass
    can be made to fail after ``fail_after`` messages, as a dropped connection would."""

    def __init__(self, source: MailSource, fail_after: int | None = None) -> None:
        self.source = source
        self.moves: list[int] = []
        self.fail_after = fail_after

    def fetch(self, max_bytes: int) -> Iterator[Incoming]:
        for count, item in enumerate(self.source.fetch(max_bytes)):
            if count == self.fail_after:
                self.fail_after = None
                raise SourceUnavailable("connection dropped (test)")
            yield item

    def mark_processed(self, *items: Incoming) -> None:
        self.moves.append(len(items))
        self.source.mark_processed(*items)

    def quarantine(self, *items: Incoming) -> None:
        self.moves.append(len(items))
        self.source.quarantine(*items)

    def wait(self, timeout: float) -> bool:
        return self.source.wait(timeout)

    def close(self) -> None:
        self.source.close()


def test_a_backlog_is_moved_once_move_every_are_recorded_and_the_rest_at_the_end_of_the_pass(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_module, "MOVE_EVERY", 250)
    samples = corpus_mix(650, tag="moves")
    seed_imap(imap_account, [s.raw for s in samples])
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, sqlite_url(tmp_path)))
    d.source = source = _CountingMoves(d.source)
    assert d.run(once=True) == 0
    assert source.moves == [300, 300, 50]  # batches of RECORD_BATCH are recorded, moved once 250 wait
    assert folder_counts(imap_account) == {"INBOX": 0, "Processed": 650, "Quarantine": 0}
    check_replies(samples, sqlite_url(tmp_path), smtp_server)
    assert duplicates(smtp_server.messages) == {}


def test_messages_recorded_but_not_moved_when_the_mailbox_drops_are_only_moved_by_the_next_pass(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture) -> None:
    samples = corpus_mix(350, tag="dropped")
    seed_imap(imap_account, [s.raw for s in samples])
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, sqlite_url(tmp_path)))
    d.source = source = _CountingMoves(d.source, fail_after=250)
    assert d.run(once=True) == 0
    assert source.moves == [350]  # nothing moved by the failed pass; all of it at the end of the next
    assert folder_counts(imap_account) == {"INBOX": 0, "Processed": 350, "Quarantine": 0}
    assert db_rows(sqlite_url(tmp_path), "SELECT count(*) FROM messages") == [(350,)]
    check_replies(samples, sqlite_url(tmp_path), smtp_server)
    assert duplicates(smtp_server.messages) == {}


def test_once_the_mailbox_is_drained_the_daemon_sends_beside_its_slow_sender_process(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture) -> None:
    """With the intake done, the replies still queued go out over two connections: the sender
    process's and the daemon's own; leases keep them apart, so each reply still leaves once."""
    samples = corpus_mix(400, tag="beside")  # more replies than the sender process leases at once (BATCH)
    seed_imap(imap_account, [s.raw for s in samples])
    smtp_server.answer_data_after(0.015)  # the sender process's: alone it would take seconds after the intake
    _, d = daemon(config_for(tmp_path, imap_account, smtp_server, sqlite_url(tmp_path)))
    assert d.run(once=True) == 0
    per_connection = Counter(m.peer for m in smtp_server.messages)
    assert len(per_connection) == 2 and min(per_connection.values()) >= 10, per_connection
    check_replies(samples, sqlite_url(tmp_path), smtp_server)
    assert duplicates(smtp_server.messages) == {}
    assert list(tmp_path.glob("maild.db-sent*")) and not list(tmp_path.glob("maild.db-sent*/*")), "journals removed"
