"""Replies held by the per-sender brake: listed, released by an operator, then sent by the daemon."""

from __future__ import annotations

import email
import email.policy
import mailbox
from pathlib import Path

import pytest

from tests.daemon_kit import daemon, db_rows, imap_table, run_cli, smtp_table, sqlite_url, write_config
from tests.ops_kit import cli_json, request
from tests.servers import CapturedMail, ImapAccount, SmtpCapture, seed_imap

SENDER = "mario.rossi@ateneo.example.it"
ONE_AN_HOUR = {"max_replies_per_sender_per_hour": 1}
COLUMNS = ["ID", "STATE", "KIND", "RECIPIENT", "TICKET", "QUEUED", "CLAIMED", "MESSAGE_ID", "NOTE"]


@pytest.fixture(params=("sqlite", "postgresql"))
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("pg_url")
    return url


def three_requests() -> list[bytes]:
    """Three requests of one sender, three tickets: with one reply an hour, two acknowledgments are held."""
    return [request(SENDER, f"Domanda {n}", "Che orari ha il servizio di assistenza?",
                    f"Tue, 12 Jan 2027 10:0{n}:00 +0100")[1] for n in range(3)]


def message_id(mail: CapturedMail) -> str:
    return str(email.message_from_bytes(mail.data, policy=email.policy.default)["Message-ID"])


def test_held_replies_are_listed_and_a_released_one_is_sent_past_the_brake(
        tmp_path: Path, imap_account: ImapAccount, smtp_server: SmtpCapture, db_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seed_imap(imap_account, three_requests())
    config = write_config(tmp_path / "maild.toml", mailbox=imap_table(imap_account), smtp=smtp_table(smtp_server),
                          database_url=db_url, limits=ONE_AN_HOUR)
    assert daemon(config)[1].run(once=True) == 0
    assert len(smtp_server.messages) == 1

    every = cli_json(config, "outbox", "list")
    assert [r["id"] for r in every] == sorted((r["id"] for r in every), reverse=True)  # newest first
    assert [r["state"] for r in every] == ["held", "held", "sent"]
    assert len({r["ticket"] for r in every}) == 3 and all(r["ticket"].startswith("HD-") for r in every)
    sent = every[-1]
    assert sent["message_id"] == message_id(smtp_server.messages[0])
    assert sent["claimed_at"] and sent["sent_at"] and sent["hold_reason"] is None and sent["recipients"] == [SENDER]
    held = cli_json(config, "outbox", "list", "--held")
    assert held == every[:2]
    for row in held:
        assert (row["kind"], row["recipients"], row["claimed_at"], row["released_at"]) == ("ack", [SENDER], None, None)
        assert row["hold_reason"] == f"max_replies_per_sender_per_hour: 1 replies to {SENDER} in the last hour"

    table = run_cli(config, "outbox", "list", "--held")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == COLUMNS
    assert [line.split()[:5] for line in lines] == [[str(r["id"]), "held", "ack", SENDER, r["ticket"]] for r in held]
    for row, line in zip(held, lines, strict=True):  # the Message-ID and the reason whole, not cut to fit
        assert f"  {row['message_id']}  " in line and line.endswith(f"  {row['hold_reason']}")

    refused_without_change(config, db_url, sent["id"])
    monkeypatch.setenv("SUDO_USER", "anna.operatrice")  # who ran `sudo maild ...`, not the account it runs as
    newer, older = held
    done = run_cli(config, "outbox", "release", str(older["id"]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"reply {older['id']} (ack to {SENDER} about {older['ticket']}) released")

    assert daemon(config)[1].run(once=True) == 0
    assert [message_id(m) for m in smtp_server.messages] == [sent["message_id"], older["message_id"]]
    after = {r["id"]: r for r in cli_json(config, "outbox", "list")}
    assert after[older["id"]]["state"] == "sent" and after[older["id"]]["released_at"]
    assert after[newer["id"]]["state"] == "held"  # the brake still holds what nobody released

    (story,) = cli_json(config, "ticket", "show", older["ticket"])
    kinds = [e["kind"] for e in story["events"]]
    assert kinds.index("held") < kinds.index("released") < kinds.index("acknowledged")
    (released,) = [e for e in story["events"] if e["kind"] == "released"]
    assert released["outbox"] == older["id"]
    assert released["data"] == {"by": "anna.operatrice", "kind": "ack", "recipient": SENDER}
    (hold,) = [e for e in story["events"] if e["kind"] == "held"]
    assert hold["reasons"] == [older["hold_reason"]] and released["reasons"] == []
    shown = run_cli(config, "ticket", "show", older["ticket"])
    assert shown.returncode == 0, shown.stderr
    assert f"released      by=anna.operatrice, kind=ack, recipient={SENDER}" in shown.stdout
    assert [(r["state"], r["last_error"]) for r in story["replies"]] == [("sent", None)]


def refused_without_change(config: Path, db_url: str, sent_id: int) -> None:
    """An id that is not there, or a reply that is not held: a clear error, and nothing changes."""
    before = db_rows(db_url, "SELECT id, state, next_attempt_at, released_at FROM outbox ORDER BY id")
    events = db_rows(db_url, "SELECT count(*) FROM events")
    missing = run_cli(config, "outbox", "release", "999999")
    assert missing.returncode == 1 and "no reply 999999 in the outbox" in missing.stderr
    not_held = run_cli(config, "outbox", "release", str(sent_id))
    assert not_held.returncode == 1 and f"reply {sent_id} is sent, not held" in not_held.stderr
    assert db_rows(db_url, "SELECT id, state, next_attempt_at, released_at FROM outbox ORDER BY id") == before
    assert db_rows(db_url, "SELECT count(*) FROM events") == events


def test_run_once_writes_a_released_reply_to_the_maildir_past_the_brake(tmp_path: Path) -> None:
    inbox, sent = tmp_path / "inbox", tmp_path / "sent"
    incoming = mailbox.Maildir(inbox, create=True)
    for raw in three_requests():
        incoming.add(raw)
    config = write_config(tmp_path / "maild.toml", mailbox={"kind": "maildir", "path": str(inbox)},
                          smtp={"kind": "maildir", "path": str(sent)}, database_url=sqlite_url(tmp_path),
                          limits=ONE_AN_HOUR)

    def written() -> list[bytes]:
        return [p.read_bytes() for p in sorted((sent / "new").iterdir())]

    first = run_cli(config, "run", "--once")
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(written()) == 1
    newer, older = cli_json(config, "outbox", "list", "--held")

    assert run_cli(config, "outbox", "release", str(newer["id"])).returncode == 0
    second = run_cli(config, "run", "--once")
    assert second.returncode == 0, second.stderr[-3000:]
    replies = written()
    assert len(replies) == 2
    assert sum(f"Message-ID: {newer['message_id']}".encode() in r for r in replies) == 1

    third = run_cli(config, "run", "--once")
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(written()) == 2  # the other one stays held
    assert [r["id"] for r in cli_json(config, "outbox", "list", "--held")] == [older["id"]]
