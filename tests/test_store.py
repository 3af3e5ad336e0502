"""The database layer, on SQLite (a temp file) and on PostgreSQL (the ``pg_url`` fixture).

Every behaviour test runs on both backends; the concurrency tests need real
row locks and run on PostgreSQL only (SQLite drops FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, event, select, text, update
from sqlalchemy.exc import DBAPIError

from maild.errors import StoreError, TemplateError
from maild.mail.keys import content_hash, dedupe_key, message_key
from maild.records import (
    Address,
    AuthDecision,
    Category,
    Classification,
    Decision,
    Disposition,
    EventKind,
    Intake,
    IntakeResult,
    MessageKind,
    OutboxState,
    OutgoingMail,
    QuarantineState,
    QueuedIntake,
    ScreenResult,
    TakeIn,
    TakeInItem,
    ThreadQuery,
    TicketRef,
    TicketState,
)
from maild.settings import Limits
from maild.store import Store
from maild.store import tickets as ticket_ops
from maild.store.engine import configure_sqlite_connection, make_engine
from maild.store.migrate import upgrade
from maild.store.migrations import alembic_config, head_revision
from maild.store.models import Base, Ticket
from maild.store.outbox import retry_at
from maild.store.schema import SCHEMA_REVISION, at_revision
from tests.factories import message
from tests.servers import wait_until

ROME = ZoneInfo("Europe/Rome")
NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
HELPDESK = "helpdesk-posta@servizi.example.it"
REQUESTER = "mario.rossi@ateneo.example.it"
LIMITS = Limits(max_replies_per_sender_per_hour=20, max_replies_per_sender_per_day=50)


# ---------------------------------------------------------------- fixtures and builders


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/db/maild.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url, timezone=ROME) as opened:
        yield opened


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    with Store.open(pg_url, timezone=ROME) as opened:
        yield opened


def raw_message(mid: str, sender: str = REQUESTER, subject: str = "Richiesta", body: str = "Buongiorno",
                *, eol: str = "\r\n") -> bytes:
    lines = [f"From: Mario Rossi <{sender}>", f"To: {HELPDESK}", f"Subject: {subject}",
             f"Message-ID: {mid}", "Date: Mon, 01 Mar 2027 10:00:00 +0100", "", body, ""]
    return eol.join(lines).encode("utf-8", "surrogateescape")


def intake(
    n: int, *, sender: str = REQUESTER, subject: str = "Richiesta", decision: Decision = Decision.ACCEPTED,
    category: Category = Category.ANAGRAFICA, priority: int = 3, received_at: datetime = NOW,
    take_in_at: datetime | None = None, thread: TicketRef | None = None, body: str = "Buongiorno",
    in_reply_to: tuple[str, ...] = (), reasons: tuple[str, ...] = ("rule: anagrafica",),
    quarantine_id: int | None = None, review: str = "",
) -> Intake:
    mid = f"<m{n}@ateneo.example.it>"
    raw = raw_message(mid, sender, subject, body)
    parsed = message(message_id=mid, from_addresses=(Address("Mario Rossi", sender),), subject=subject,
                     body_text=body, in_reply_to=in_reply_to, size=len(raw))
    take_in = None if decision is Decision.IGNORED else TakeIn(take_in_at or received_at, True)
    disposition = Disposition(
        message=parsed, category=category, decision=decision, administration="Ateneo", priority=priority,
        language="it", received_at=received_at, take_in=take_in, reasons=reasons, review=review,
    )
    return Intake(dedupe_key=dedupe_key(raw), source_id=f"uid:{n}", raw=raw, disposition=disposition,
                  now=received_at, thread=thread,
                  screen=ScreenResult(True, ("no auto-reply headers",)),
                  classification=Classification(category, "it", ("keyword: telefono",)),
                  auth=AuthDecision(True, ("not privileged",)), quarantine_id=quarantine_id)


def ack(recipient: str = REQUESTER, kind: str = "ack") -> Callable[[TicketRef | None], tuple[OutgoingMail, ...]]:
    def render(ticket: TicketRef | None) -> tuple[OutgoingMail, ...]:
        ref = ticket.reference if ticket else "none"
        counter = next(_ids)
        mid = f"<{kind}-{ref}-{counter}@servizi.example.it>"
        return (OutgoingMail(kind, mid, "", (recipient,), f"Message-ID: {mid}\r\n\r\n{ref}\r\n".encode()),)
    return render


_ids = iter(range(1, 1_000_000))


def no_replies(ticket: TicketRef | None) -> tuple[OutgoingMail, ...]:
    return ()


def table_counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in ("messages", "tickets", "events", "outbox", "ticket_counters")}


# ---------------------------------------------------------------- migrations


def test_migrations_run_from_empty_are_idempotent_and_match_the_models(db_url: str) -> None:
    upgrade(db_url)
    upgrade(db_url)
    with Store.open(db_url) as store:
        assert store.revision() == head_revision() == "0007"
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        assert store.queue() == ()


def test_the_schema_revision_the_code_knows_is_alembics_head() -> None:
    assert head_revision() == SCHEMA_REVISION


_OPEN_AND_REPORT = """
import sys
from maild.store import Store
with Store.open(sys.argv[1]) as store:
    pass
print("alembic" in sys.modules)
"""


def _opened_with_alembic(url: str) -> bool:
    """Whether ``Store.open`` in a fresh interpreter loaded Alembic to check or migrate ``url``."""
    done = subprocess.run([sys.executable, "-c", _OPEN_AND_REPORT, url], capture_output=True, text=True,
                          check=True, timeout=60)
    return {"True": True, "False": False}[done.stdout.strip()]


def test_a_database_at_head_is_opened_without_alembic_and_any_other_is_migrated(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert not at_revision(engine)
        assert _opened_with_alembic(db_url)  # new: migrated
        assert at_revision(engine)
        assert not _opened_with_alembic(db_url)  # at head: one SELECT
        _migrate(db_url, "0001", down=True)
        assert not at_revision(engine)
        assert _opened_with_alembic(db_url)  # behind: migrated again
        assert at_revision(engine)
        with engine.begin() as conn:  # two heads recorded: not ours, so Alembic looks at it
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('ffff')"))
        assert not at_revision(engine)
    finally:
        engine.dispose()


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def test_raw_bytes_move_to_their_own_table_and_back(db_url: str) -> None:
    """0002 takes the raw bytes out of ``messages`` without losing one; its downgrade puts them back."""
    raw = b"Subject: prima\r\n\r\n\x00\xff corpo binario"
    _migrate(db_url, "0001")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO messages (dedupe_key, source_id, message_id, message_key, from_addr, subject, "
                "received_at, raw, size, body_text, category, decision, language, priority, reasons, kind, "
                "created_at) VALUES ('k1', '1:1', '<a@b>', 'a@b', 'x@y', 's', :at, :raw, :size, 'b', 'other', "
                "'accepted', 'it', 2, '[]', 'new', :at)"), {"at": datetime(2027, 1, 1, tzinfo=UTC), "raw": raw,
                                                            "size": len(raw)})
        _migrate(db_url, "head")
        with Store(db_url) as store:
            assert store.revision() == head_revision()
            assert store.message_raw(1) == raw
        _migrate(db_url, "0001", down=True)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT raw FROM messages WHERE id = 1")).scalar_one() == raw
    finally:
        engine.dispose()


def test_migrations_work_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    upgrade("sqlite:///relative/maild.db")
    with Store("sqlite:///relative/maild.db") as store:
        assert store.revision() == head_revision()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path}/m.db") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() > 0


def test_bad_urls_and_unmigrated_databases_raise_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store("mysql://x@localhost/db")
    with pytest.raises(StoreError):
        Store("not a url")
    with Store(f"sqlite:///{tmp_path}/empty.db") as store, pytest.raises(StoreError) as info:
        store.queue()
    assert isinstance(info.value.__cause__, DBAPIError)


# ---------------------------------------------------------------- dedupe keys (pure)


def test_dedupe_key_survives_what_servers_do_to_a_message() -> None:
    lf = raw_message("<a@x>", body="riga uno\nriga due", eol="\n")
    crlf = lf.replace(b"\n", b"\r\n")
    assert dedupe_key(lf) == dedupe_key(crlf) == dedupe_key(crlf + b"\r\n")
    with_nul = raw_message("<a@x>", body="riga\x00uno", eol="\n")
    assert dedupe_key(with_nul) == dedupe_key(with_nul.replace(b"\x00", b"\x80").replace(b"\n", b"\r\n"))
    traced = (b"Return-Path: <mario@x>\r\nDelivered-To: alias@servizi.example.it\r\n"
              b"Received: from mx by imap; Mon, 1 Mar 2027\r\n  10:00:00 +0100\r\n") + crlf
    assert dedupe_key(traced) == dedupe_key(lf)
    refolded = crlf.replace(b"Subject: Richiesta", b"Subject:\r\n Richiesta")
    assert dedupe_key(refolded) == dedupe_key(lf)


def test_dedupe_key_tells_different_messages_apart() -> None:
    base = raw_message("<a@x>", body="uno")
    assert dedupe_key(base) != dedupe_key(raw_message("<a@x>", body="due"))
    assert dedupe_key(base) != dedupe_key(raw_message("<b@x>", body="uno"))
    assert dedupe_key(base) != dedupe_key(raw_message("<a@x>", subject="Altro", body="uno"))
    assert content_hash(base) == content_hash(raw_message("<a@x>", body="uno", eol="\n"))
    assert dedupe_key(base) == dedupe_key(raw_message("<A@X>", body="uno").replace(b"<A@X>", b"<a@x>"))
    assert message_key(" <AbC@Example.IT> ") == "abc@example.it"
    assert len(dedupe_key(b"")) == 64


# ---------------------------------------------------------------- intake


def test_record_intake_opens_one_ticket_with_sequential_references(store: Store) -> None:
    first = store.record_intake(intake(1), ack())
    second = store.record_intake(intake(2), ack())
    assert first.opened and first.kind is MessageKind.NEW and not first.duplicate
    assert first.ticket is not None and second.ticket is not None
    assert (first.ticket.reference, second.ticket.reference) == ("HD-2027-000001", "HD-2027-000002")
    assert first.ticket.requester == REQUESTER and first.ticket.state is TicketState.OPEN
    # The year is the help desk's: 23:30 UTC on 31 December is already 2028 in Rome.
    new_year = store.record_intake(intake(3, received_at=datetime(2027, 12, 31, 23, 30, tzinfo=UTC)), ack())
    assert new_year.ticket is not None and new_year.ticket.reference == "HD-2028-000001"

    story = store.ticket_story("hd-2027-000001")
    assert story is not None
    assert story.ticket.subject == "Richiesta" and story.ticket.category == "anagrafica"
    assert story.ticket.received_at == NOW and story.ticket.received_at.tzinfo is not None
    assert [m.kind for m in story.messages] == [MessageKind.NEW]
    assert [e.kind for e in story.events] == [
        "received", "screened", "classified", "authorized", "opened", "queued"]
    assert dict(story.events[2].data)["category"] == "anagrafica"
    assert story.events[2].reasons == ("keyword: telefono",)
    assert [(r.kind, r.state, r.recipients) for r in story.replies] == [("ack", OutboxState.PENDING,
                                                                         (REQUESTER,))]
    assert first.outbox_ids == (story.replies[0].id,)


def test_ticket_prefix_comes_from_the_store(db_url: str) -> None:
    with Store.open(db_url, ticket_prefix="PEC") as store:
        result = store.record_intake(intake(1), ack())
    assert result.ticket is not None and result.ticket.reference == "PEC-2027-000001"


def test_a_known_message_is_a_duplicate_and_nothing_is_written(store: Store) -> None:
    item = intake(1)
    store.record_intake(item, ack())
    before = table_counts(store)
    calls: list[TicketRef | None] = []

    def render(ticket: TicketRef | None) -> tuple[OutgoingMail, ...]:
        calls.append(ticket)
        return ack()(ticket)

    # A copy moved back into INBOX by Dovecot: LF line ends, a new UID, a new trace header.
    copy = b"Received: from imap\r\n" + item.raw.replace(b"\r\n", b"\n")
    again = store.record_intake(replace(item, raw=copy, dedupe_key=dedupe_key(copy), source_id="uid:99"), render)
    assert again == IntakeResult(duplicate=True)
    assert calls == []
    assert table_counts(store) == before
    assert store.is_known(item.dedupe_key) and not store.is_known("0" * 64)


def test_a_failing_render_rolls_everything_back(store: Store) -> None:
    def broken(ticket: TicketRef | None) -> tuple[OutgoingMail, ...]:
        raise TemplateError("ack.it.txt: undefined variable")

    with pytest.raises(TemplateError):
        store.record_intake(intake(1), broken)
    assert table_counts(store)["messages"] == 0 and table_counts(store)["tickets"] == 0
    result = store.record_intake(intake(1), ack())
    assert result.ticket is not None and result.ticket.reference == "HD-2027-000001"


def test_an_ignored_message_gets_no_ticket_and_never_a_reply(store: Store) -> None:
    def forbidden(ticket: TicketRef | None) -> tuple[OutgoingMail, ...]:
        raise AssertionError("render called for an ignored message")

    result = store.record_intake(intake(1, decision=Decision.IGNORED, reasons=("auto-submitted",)), forbidden)
    assert result.kind is MessageKind.IGNORED and result.ticket is None and result.outbox_ids == ()
    assert table_counts(store)["tickets"] == 0 and table_counts(store)["outbox"] == 0
    events = store.recent_events()
    assert [e.kind for e in events][-1] == "ignored" and events[-1].reasons == ("auto-submitted",)


def test_a_rejected_request_records_the_refusal_reasons(store: Store) -> None:
    item = intake(1, decision=Decision.REJECTED, category=Category.PASSWORD_RESET)
    item = replace(item, auth=AuthDecision(False, ("sender not authorized",)))
    result = store.record_intake(item, ack(kind="refusal"))
    assert result.ticket is not None
    story = store.ticket_story(result.ticket.reference)
    assert story is not None and story.ticket.decision == "rejected"
    rejected = [e for e in story.events if e.kind == "rejected"]
    assert [e.reasons for e in rejected] == [("sender not authorized",)]
    assert [r.kind for r in story.replies] == ["refusal"]
    # Without a take-in the refusal is still queued, with no ticket.
    bare = replace(intake(2, decision=Decision.REJECTED), auth=AuthDecision(False, ("no",)))
    bare = replace(bare, disposition=replace(bare.disposition, take_in=None))
    seen: list[TicketRef | None] = []

    def refusal(ticket: TicketRef | None) -> tuple[OutgoingMail, ...]:
        seen.append(ticket)
        return ack(kind="refusal")(ticket)

    refused = store.record_intake(bare, refusal)
    assert refused.kind is MessageKind.REFUSED and refused.ticket is None and seen == [None]
    assert len(refused.outbox_ids) == 1


def test_text_with_nul_and_lone_surrogates_is_cleaned_and_round_trips(store: Store) -> None:
    dirty = "Cambio\x00 telefono \udce8 ok \U0001f600"
    item = intake(1, subject=dirty, body="corpo\x00\udcff", reasons=("motivo\x00", "\ud800x"))
    parsed = replace(item.disposition.message, message_id="<m1\x00@x>")
    item = replace(item, source_id="uid\x00:1", disposition=replace(item.disposition, message=parsed))
    result = store.record_intake(item, ack())
    assert result.ticket is not None
    story = store.ticket_story(result.ticket.reference)
    assert story is not None
    clean = "Cambio telefono \ufffd ok \U0001f600"
    assert story.ticket.subject == clean and story.messages[0].subject == clean
    assert story.messages[0].reasons == ("motivo", "\ufffdx")
    assert story.messages[0].message_id == "<m1@x>" and story.messages[0].source_id == "uid:1"
    assert dict(story.events[0].data)["subject"] == clean
    # Values compared in queries are cleaned the same way, so lookups never fail either.
    assert store.find_thread(["<m1\x00@x>"], ["hd\x00-1"], "a\x00@b\udcff") == result.ticket
    assert not store.is_known("\x00\udcff")
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT body_text FROM messages")).scalar_one() == "corpo\ufffd"
        assert conn.execute(text("SELECT raw FROM raw_messages")).scalar_one() == item.raw


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="naive"):
        store.due_take_ins(datetime(2027, 3, 1, 9, 0))


def test_a_reused_reply_message_id_is_a_fault_not_a_duplicate(store: Store) -> None:
    def same(ticket: TicketRef | None) -> tuple[OutgoingMail, ...]:
        return (OutgoingMail("ack", "<fixed@servizi.example.it>", "", (REQUESTER,), b"x"),)

    store.record_intake(intake(1), same)
    with pytest.raises(StoreError, match="cannot record message uid:2"):
        store.record_intake(intake(2), same)
    assert table_counts(store)["messages"] == 1 and not store.is_known(intake(2).dedupe_key)


def test_an_in_memory_database_works_for_dry_runs() -> None:
    with Store.open("sqlite://") as store:
        assert store.record_intake(intake(1), ack()).opened
        assert len(store.queue()) == 1


# ---------------------------------------------------------------- threads


def test_replies_thread_by_message_id_and_by_the_requesters_own_tag(store: Store) -> None:
    opened = store.record_intake(intake(1), ack())
    assert opened.ticket is not None
    ticket = opened.ticket
    story = store.ticket_story(ticket.reference)
    assert story is not None
    our_ack = story.replies[0].message_id

    assert store.find_thread([our_ack.upper()], [], "someone@else.it") == ticket
    assert store.find_thread(["<unknown@x>", "<m1@ateneo.example.it>"], [], "") == ticket
    assert store.find_thread([], [ticket.reference.lower()], "Mario.Rossi@Ateneo.Example.IT") == ticket
    # Someone else quoting the tag does not join the ticket.
    assert store.find_thread([], [ticket.reference], "intruso@example.org") is None
    assert store.find_thread(["<unknown@x>"], ["HD-2027-999999"], REQUESTER) is None

    followup = intake(2, in_reply_to=(our_ack,), subject=f"Re: [{ticket.reference}] Richiesta", thread=ticket)
    result = store.record_intake(followup, no_replies)
    assert result.kind is MessageKind.FOLLOWUP and result.ticket == ticket and not result.opened
    assert table_counts(store)["tickets"] == 1
    story = store.ticket_story(ticket.reference)
    assert story is not None
    assert [m.kind for m in story.messages] == [MessageKind.NEW, MessageKind.FOLLOWUP]
    assert "followup" in [e.kind for e in story.events]
    # An auto-reply to our ack is recorded on the ticket as ignored, nothing more.
    auto = intake(3, decision=Decision.IGNORED, thread=ticket)
    assert store.record_intake(auto, no_replies).kind is MessageKind.IGNORED
    story = store.ticket_story(ticket.reference)
    assert story is not None and story.events[-1].kind == "ignored" and len(story.replies) == 1


def test_a_follow_up_reopens_its_resolved_ticket_and_an_auto_reply_does_not(store: Store) -> None:
    first = store.record_intake(intake(1), ack())
    ticket = first.ticket
    assert ticket is not None
    assert store.resolve(ticket.reference, NOW, by="operator")
    resolved = store.find_thread(["<m1@ateneo.example.it>"], [], REQUESTER)
    assert resolved is not None and resolved.state is TicketState.RESOLVED

    auto = store.record_intake(intake(2, decision=Decision.IGNORED, thread=resolved), no_replies)
    assert not auto.reopened  # an auto-reply to the resolution notice: nobody needs to look again
    summary = store.ticket(ticket.reference)
    assert summary is not None and summary.state is TicketState.RESOLVED

    followup = store.record_intake(intake(3, body="Il numero è ancora sbagliato", thread=resolved), no_replies)
    assert followup.kind is MessageKind.FOLLOWUP and followup.reopened
    summary = store.ticket(ticket.reference)
    assert summary is not None and summary.state is TicketState.OPEN and summary.resolved_at is None
    assert ticket.reference in [t.reference for t in store.queue()]
    story = store.ticket_story(ticket.reference)
    assert story is not None
    assert [e.kind for e in story.events][-2:] == ["followup", "reopened"]
    assert ("by", "follow-up") in story.events[-1].data

    # A second follow-up finds the ticket open: nothing to reopen, no second event.
    again = store.record_intake(intake(4, thread=store.find_thread(["<m1@ateneo.example.it>"], [], REQUESTER)),
                                no_replies)
    assert again.kind is MessageKind.FOLLOWUP and not again.reopened
    story = store.ticket_story(ticket.reference)
    assert story is not None and [e.kind for e in story.events].count("reopened") == 1


def test_two_follow_ups_in_one_batch_reopen_their_ticket_once(store: Store) -> None:
    first = store.record_intake(intake(1), ack())
    assert first.ticket is not None and store.resolve(first.ticket.reference, NOW, by="operator")
    query = ThreadQuery(message_ids=("<m1@ateneo.example.it>",), tags=(), from_addr=REQUESTER)
    results = store.record_intakes([QueuedIntake(intake(n), query, lambda ticket, followup: ())
                                    for n in (2, 3)])
    assert [(r.kind, r.reopened) for r in results] == [(MessageKind.FOLLOWUP, True), (MessageKind.FOLLOWUP, False)]
    story = store.ticket_story(first.ticket.reference)
    assert story is not None and [e.kind for e in story.events].count("reopened") == 1
    summary = store.ticket(first.ticket.reference)
    assert summary is not None and summary.state is TicketState.OPEN
    # The second saw the ticket the first had just reopened, as it would have one by one.
    assert [dict(e.data)["state"] for e in story.events if e.kind == "followup"] == ["resolved", "open"]


def _counting_inserts(store: Store, table: str) -> list[str]:
    """The INSERT statements into ``table`` run on ``store`` from now on."""
    seen: list[str] = []

    def before(_conn: Connection, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith(f"INSERT INTO {table} "):
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", before)
    return seen


def test_a_batch_is_written_at_once_unless_a_follow_up_names_a_message_ahead_of_it(store: Store) -> None:
    first = store.record_intake(intake(1), ack())
    inserts = _counting_inserts(store, "messages")

    def follow_up(n: int, of: int) -> QueuedIntake:
        query = ThreadQuery(message_ids=(f"<m{of}@ateneo.example.it>",), tags=(), from_addr=REQUESTER)
        return QueuedIntake(intake(n), query, lambda ticket, followup: ())

    plain = [QueuedIntake(intake(n), None, lambda ticket, followup: ()) for n in (10, 12, 13)]
    results = store.record_intakes([plain[0], follow_up(11, of=1), plain[1], follow_up(14, of=12), plain[2]])
    # Written before the follow-up of m12 (it needs m12's ticket) and at the end; the follow-up of
    # m1, recorded before the batch, needed nothing of its batch written first.
    assert len(inserts) == 2
    assert [r.kind for r in results] == [MessageKind.NEW, MessageKind.FOLLOWUP, MessageKind.NEW,
                                         MessageKind.FOLLOWUP, MessageKind.NEW]
    assert results[1].ticket == first.ticket
    assert results[3].ticket is not None and results[3].ticket == results[2].ticket


def test_a_reference_opened_in_the_same_batch_is_not_looked_for(store: Store) -> None:
    """Its tickets' references and replies' Message-IDs are not committed, so nobody can have seen
    them: a subject naming one is a guess, and opens a ticket of its own."""
    guess = ThreadQuery(message_ids=(), tags=("HD-2027-000001",), from_addr=REQUESTER)
    opened, guessing = store.record_intakes([QueuedIntake(intake(1), None, lambda ticket, followup: ()),
                                             QueuedIntake(intake(2), guess, lambda ticket, followup: ())])
    assert opened.ticket is not None and opened.ticket.reference == "HD-2027-000001"
    assert guessing.kind is MessageKind.NEW
    assert guessing.ticket is not None and guessing.ticket.reference == "HD-2027-000002"
    # Once committed, the same subject tag continues the ticket.
    later = store.record_intakes([QueuedIntake(intake(3), guess, lambda ticket, followup: ())])
    assert later[0].kind is MessageKind.FOLLOWUP and later[0].ticket == opened.ticket


# ---------------------------------------------------------------- outbox


def _queue_acks(store: Store, count: int, sender: str = REQUESTER, start: int = 1) -> None:
    for n in range(start, start + count):
        store.record_intake(intake(n, sender=sender), ack(sender))


def test_the_brake_counts_from_its_own_covering_index_on_sqlite(tmp_path: Path) -> None:
    """The plan SQLite picks for the count the brake makes before each claim: it must not read the
    replies themselves (nor walk every sent reply by state, as it did with the state filtered)."""
    executed: list[tuple[str, Any]] = []

    def before(_conn: Connection, _cursor: object, statement: str, parameters: Any, *_args: object) -> None:
        if "sum(CASE" in statement:
            executed.append((statement, parameters))

    with Store.open(f"sqlite:///{tmp_path}/brake.db") as store:
        _queue_acks(store, 25)
        for n in range(40):  # many recipients in one claim, as in a backlog: the plan depends on them
            _queue_acks(store, 1, sender=f"utente{n}@ateneo.example.it", start=100 + n)
        event.listen(store.engine, "before_cursor_execute", before)
        assert len(store.claim_outbox(NOW, 10, "sender-1", 60, LIMITS)) == 10
        assert len(store.claim_outbox(NOW, 100, "sender-1", 60, LIMITS)) == 50  # 10 + 40: the brake holds 5
        event.remove(store.engine, "before_cursor_execute", before)
        with store.engine.connect() as conn:
            plans = [" ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
                     for sql, params in executed]
    assert len(plans) == 2
    assert all(plan == "SEARCH outbox USING COVERING INDEX ix_outbox_brake (rcpt_key=? AND kind=? AND claimed_at>?)"
               for plan in plans), plans


def test_the_per_sender_brake_holds_the_21st_reply_in_an_hour(store: Store) -> None:
    _queue_acks(store, 21)
    _queue_acks(store, 1, sender="other@ateneo.example.it", start=100)
    store.record_intake(intake(200, sender="x@y.it"), ack("referente.tecnico@ateneo.example.it",
                                                          kind="referente_notice"))
    claimed = store.claim_outbox(NOW, 100, "sender-1", 60, LIMITS)
    assert len(claimed) == 22  # 20 to the requester, 1 to the other sender, the exempt notice
    held = store.outbox(OutboxState.HELD)
    assert len(held) == 1 and held[0].recipients == (REQUESTER,)
    assert held[0].last_error is not None and "max_replies_per_sender_per_hour" in held[0].last_error
    events = [e for e in store.recent_events(500) if e.kind == "held"]
    assert len(events) == 1 and events[0].outbox_id == held[0].id
    for item in claimed:
        assert store.mark_sent(item.id, NOW)
    # Another reply within the hour is held too; after the hour it goes.
    _queue_acks(store, 1, start=300)
    assert store.claim_outbox(NOW + timedelta(minutes=30), 10, "sender-1", 60, LIMITS) == []
    _queue_acks(store, 1, start=301)
    later = store.claim_outbox(NOW + timedelta(minutes=61), 10, "sender-1", 60, LIMITS)
    assert [i.recipients for i in later] == [(REQUESTER,)]


def test_a_released_reply_passes_the_brake_and_only_it(store: Store) -> None:
    limits = Limits(max_replies_per_sender_per_hour=1, max_replies_per_sender_per_day=50)
    _queue_acks(store, 3)
    (first,) = store.claim_outbox(NOW, 10, "s", 60, limits)
    assert store.mark_sent(first.id, NOW)
    held = store.outbox_listing(OutboxState.HELD)
    assert [o.id for o in held] == sorted((o.id for o in held), reverse=True) and len(held) == 2  # newest first
    newer, older = held
    assert newer.ticket is not None and newer.ticket.startswith("HD-2027-") and newer.claimed_at is None

    later = NOW + timedelta(minutes=5)
    assert not store.release_held(first.id, later, by="anna")  # sent, not held
    assert store.release_held(older.id, later, by="anna")
    assert not store.release_held(older.id, later, by="anna")  # once
    released = store.outbox_entry(older.id)
    assert released is not None and released.state is OutboxState.PENDING and released.released_at == later
    assert released.last_error is None  # the brake's reason is in the held event, not an error of the reply
    assert store.outbox_entry(10_000) is None

    # The brake, at its limit for this recipient, lets the released reply go and holds the other again.
    claimed = store.claim_outbox(later, 10, "s", 60, limits)
    assert [i.id for i in claimed] == [older.id]
    assert store.mark_sent(older.id, later)
    assert [o.id for o in store.outbox_listing(OutboxState.HELD)] == [newer.id]
    (event,) = [e for e in store.recent_events(500) if e.kind == "released"]
    assert event.outbox_id == older.id and event.ticket_id == older.ticket_id and event.at == later
    assert dict(event.data) == {"by": "anna", "kind": "ack", "recipient": REQUESTER}
    (hold,) = [e for e in store.recent_events(500) if e.kind == "held" and e.outbox_id == older.id]
    assert hold.reasons == (older.last_error,) and "max_replies_per_sender_per_hour" in hold.reasons[0]


def test_a_reply_the_brake_let_through_is_not_held_on_its_retry(store: Store) -> None:
    limits = Limits(max_replies_per_sender_per_hour=2, max_replies_per_sender_per_day=50)
    _queue_acks(store, 2)
    first, second = store.claim_outbox(NOW, 10, "s", 60, limits)
    assert store.mark_sent(first.id, NOW)
    later = NOW + timedelta(minutes=2)
    assert store.mark_retry(second.id, "s", NOW, "421 busy", later)  # refused for now, passed the brake once
    _queue_acks(store, 1, start=10)  # a third reply meanwhile takes the hour's last place
    assert sorted(i.id for i in store.claim_outbox(later, 10, "s", 60, limits)) == [second.id, second.id + 1]
    assert store.outbox(OutboxState.HELD) == ()  # the retry is the same reply, not one more


def test_the_next_reply_due_is_the_earliest_pending_one(store: Store) -> None:
    assert store.next_reply_due() is None
    _queue_acks(store, 2)
    assert store.next_reply_due() == NOW  # queued: due at once
    first, second = store.claim_outbox(NOW, 10, "s", 60, LIMITS)
    assert store.next_reply_due() is None  # both leased: none waits
    assert store.mark_retry(second.id, "s", NOW, "421 busy", NOW + timedelta(seconds=40))
    assert store.mark_retry(first.id, "s", NOW, "421 busy", NOW + timedelta(seconds=3))
    assert store.next_reply_due() == NOW + timedelta(seconds=3)
    assert store.mark_sent(store.claim_outbox(NOW + timedelta(seconds=3), 10, "s", 60, LIMITS)[0].id, NOW)
    assert store.next_reply_due() == NOW + timedelta(seconds=40)

def test_the_daily_brake_counts_the_whole_day(store: Store) -> None:
    limits = Limits(max_replies_per_sender_per_hour=5, max_replies_per_sender_per_day=6)
    _queue_acks(store, 5)
    for item in store.claim_outbox(NOW, 10, "s", 60, limits):
        assert store.mark_sent(item.id, NOW)
    _queue_acks(store, 2, start=10)
    first = store.claim_outbox(NOW + timedelta(hours=2), 10, "s", 60, limits)
    assert len(first) == 1
    assert len(store.outbox(OutboxState.HELD)) == 1
    assert "per_day" in (store.outbox(OutboxState.HELD)[0].last_error or "")


def test_one_claim_brakes_each_recipient_and_group_on_its_own_counts(store: Store) -> None:
    limits = Limits(max_replies_per_sender_per_hour=2, max_replies_per_sender_per_day=3,
                    max_referente_notices_per_hour=1, max_referente_notices_per_day=5)
    earlier = NOW - timedelta(hours=2)
    a, b, c = "a@ateneo.example.it", "b@ateneo.example.it", "c@ateneo.example.it"
    n = iter(range(1, 100))

    def queue(rcpt: str, count: int, kind: str = "ack", at: datetime = NOW) -> None:
        for _ in range(count):
            store.record_intake(intake(next(n), sender=rcpt, received_at=at), ack(rcpt, kind=kind))

    # Two hours ago: a got 2 replies (day budget 1 left), b 1 reply and c 1 notice.
    queue(a, 2, at=earlier)
    queue(b, 1, at=earlier)
    queue(c, 1, kind="referente_notice", at=earlier)
    for item in store.claim_outbox(earlier, 10, "s", 60, limits):
        assert store.mark_sent(item.id, earlier)
    # Now, one claim over all of them, interleaved: refusals share the reply budget, notices have theirs.
    queue(a, 2)
    queue(b, 2, kind="refusal")
    queue(b, 1)
    queue(c, 2, kind="referente_notice")
    queue(c, 2)
    queue(a, 1, kind="referente_notice")
    claimed = store.claim_outbox(NOW, 100, "s", 60, limits)
    got = [(i.recipients[0], i.kind) for i in claimed]
    assert got == [(a, "ack"), (b, "refusal"), (b, "refusal"), (c, "referente_notice"), (c, "ack"), (c, "ack"),
                   (a, "referente_notice")]
    held = {o.id: o for o in store.outbox(OutboxState.HELD)}
    reasons = sorted((o.recipients[0], o.kind, (o.last_error or "").split(":")[0]) for o in held.values())
    assert reasons == [(a, "ack", "max_replies_per_sender_per_day"), (b, "ack", "max_replies_per_sender_per_hour"),
                       (c, "referente_notice", "max_referente_notices_per_hour")]
    events = [e for e in store.recent_events(500) if e.kind == "held"]
    assert sorted(e.outbox_id or 0 for e in events) == sorted(held)
    assert all(dict(e.data)["recipient"] == held[e.outbox_id or 0].recipients[0] for e in events)
    assert all(e.reasons == (held[e.outbox_id or 0].last_error,) for e in events)


def test_outbox_events_carry_the_reply_facts(store: Store) -> None:
    _queue_acks(store, 3)
    first, second, third = store.claim_outbox(NOW, 10, "s", 60, LIMITS)
    later = NOW + timedelta(minutes=5)
    assert store.mark_sent(first.id, NOW)
    assert store.mark_retry(second.id, "s", NOW, "421 busy", later)
    assert store.mark_failed(third.id, "s", NOW, "550 no such user")
    events = {e.outbox_id: e for e in store.recent_events(500) if e.kind in ("acknowledged", "send_failed", "failed")}
    sent = events[first.id]
    assert sent.kind == "acknowledged" and sent.reasons == () and sent.at == NOW
    assert dict(sent.data) == {"kind": "ack", "message_id": first.message_id, "recipients": REQUESTER,
                               "attempts": "1"}
    assert sent.ticket_id == first.ticket_id and sent.message_id is not None
    retried = events[second.id]
    assert retried.kind == "send_failed" and retried.reasons == ("421 busy",)
    assert dict(retried.data) == {"kind": "ack", "attempts": "1", "next_attempt_at": later.isoformat()}
    failed = events[third.id]
    assert failed.kind == "failed" and failed.reasons == ("550 no such user",)
    assert dict(failed.data) == {"kind": "ack", "attempts": "1"}
    [pending] = store.outbox(OutboxState.PENDING)
    assert pending.id == second.id and pending.next_attempt_at == later


def test_a_claim_leases_a_reply_until_sent_or_given_back(store: Store) -> None:
    _queue_acks(store, 1)
    [item] = store.claim_outbox(NOW, 10, "sender-a", 60, LIMITS)
    assert item.attempts == 1 and item.lease_owner == "sender-a" and item.data.startswith(b"Message-ID:")
    assert store.claim_outbox(NOW + timedelta(seconds=30), 10, "sender-b", 60, LIMITS) == []
    assert not store.mark_retry(item.id, "sender-b", NOW, "421 busy", NOW)  # not the lease owner
    later = retry_at(NOW, item.attempts)
    assert later == NOW + timedelta(minutes=1)
    assert store.mark_retry(item.id, "sender-a", NOW, "421 busy", later)
    assert store.claim_outbox(NOW + timedelta(seconds=59), 10, "sender-a", 60, LIMITS) == []
    [again] = store.claim_outbox(later, 10, "sender-a", 60, LIMITS)
    assert again.attempts == 2 and again.message_id == item.message_id
    # The sender dies: the lease expires and the reply goes again with the same Message-ID.
    assert store.claim_outbox(later + timedelta(seconds=60), 10, "sender-b", 60, LIMITS) == []
    [third] = store.claim_outbox(later + timedelta(seconds=61), 10, "sender-b", 60, LIMITS)
    assert third.message_id == item.message_id and third.attempts == 3 and third.lease_owner == "sender-b"
    assert store.mark_sent(third.id, later + timedelta(seconds=62))
    assert not store.mark_sent(third.id, later + timedelta(seconds=63))
    assert not store.mark_failed(third.id, "sender-b", NOW, "late")
    [sent] = store.outbox(OutboxState.SENT)
    assert sent.attempts == 3 and sent.last_error == "421 busy"
    kinds = [e.kind for e in store.recent_events(50)]
    assert kinds.count("acknowledged") == 1 and kinds.count("send_failed") == 1


def test_a_refused_recipient_fails_the_reply(store: Store) -> None:
    _queue_acks(store, 1)
    [item] = store.claim_outbox(NOW, 10, "s", 60, LIMITS)
    assert store.mark_failed(item.id, "s", NOW, "550 5.1.1 no such user")
    [failed] = store.outbox(OutboxState.FAILED)
    assert failed.last_error == "550 5.1.1 no such user"
    assert store.claim_outbox(NOW + timedelta(days=1), 10, "s", 60, LIMITS) == []
    assert retry_at(NOW, 30) == NOW + timedelta(hours=6)
    with pytest.raises(StoreError, match="lease"):
        store.claim_outbox(NOW, 10, "s", 0, LIMITS)


# ---------------------------------------------------------------- take-in


def test_due_take_ins_come_in_priority_then_arrival_order(store: Store) -> None:
    plan = [  # (n, priority, minutes after NOW it arrived, take-in in hours after NOW)
        (1, 3, 0, 1), (2, 1, 5, 1), (3, 3, -10, 1), (4, 2, 0, 3), (5, 1, 1, 1),
    ]
    refs: dict[int, str] = {}
    for n, priority, minutes, hours in plan:
        arrival = NOW + timedelta(minutes=minutes)
        result = store.record_intake(intake(n, priority=priority, received_at=arrival,
                                            take_in_at=NOW + timedelta(hours=hours)), ack())
        assert result.ticket is not None
        refs[n] = result.ticket.reference
    assert store.next_take_in_at() == NOW + timedelta(hours=1)
    assert store.due_take_ins(NOW) == []
    due = store.due_take_ins(NOW + timedelta(hours=1))
    assert [d.reference for d in due] == [refs[5], refs[2], refs[3], refs[1]]
    assert [d.reference for d in store.take_in(NOW + timedelta(hours=1), limit=2)] == [refs[5], refs[2]]
    assert [d.reference for d in store.take_in(NOW + timedelta(hours=1))] == [refs[3], refs[1]]
    assert store.take_in(NOW + timedelta(hours=2)) == []
    assert store.next_take_in_at() == NOW + timedelta(hours=3)
    [last] = store.due_take_ins(NOW + timedelta(hours=3))
    assert store.mark_taken_in(last.ticket_id, NOW + timedelta(hours=3))
    assert not store.mark_taken_in(last.ticket_id, NOW + timedelta(hours=3))
    assert store.next_take_in_at() is None
    story = store.ticket_story(refs[4])
    assert story is not None and story.ticket.taken_in_at == NOW + timedelta(hours=3)
    assert story.events[-1].kind == "taken_in"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def twin_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two empty stores of the same backend."""
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path}/one.db", f"sqlite:///{tmp_path}/batch.db"]
    else:
        urls = [request.getfixturevalue("pg_url"), request.getfixturevalue("pg_url_2")]
    with Store.open(urls[0], timezone=ROME) as one, Store.open(urls[1], timezone=ROME) as batch:
        yield one, batch


def _backlog(store: Store, count: int) -> list[str]:
    """``count`` tickets of mixed priority, some arriving together (the id decides), a few due later."""
    items = [QueuedIntake(intake(n, sender=f"user{n}@ateneo.example.it", priority=1 + n % 4,
                                 received_at=NOW + timedelta(minutes=n % 5),
                                 take_in_at=NOW + timedelta(hours=3 if n % 7 == 0 else 1)), None, lambda t, f: ())
             for n in range(count)]
    return [r.ticket.reference for r in store.record_intakes(items) if r.ticket is not None]


def _take_in_rows(store: Store) -> dict[str, list[tuple[object, ...]]]:
    with store.engine.connect() as conn:
        return {table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
                for table in ("tickets", "events")}


def test_take_in_writes_and_returns_what_marking_one_by_one_does(
    twin_stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ticket_ops, "CHUNK", 4)  # several UPDATEs per call, the last one short
    at = NOW + timedelta(hours=1)
    for store in twin_stores:
        refs = _backlog(store, 40)
        assert store.resolve(refs[1], NOW, by="operator")  # not open: never taken in
        [early] = [d for d in store.due_take_ins(at, 100) if d.reference == refs[2]]
        assert store.mark_taken_in(early.ticket_id, NOW)  # already taken in
    one, batched = twin_stores
    for limit in (15, 100):
        expected = one.due_take_ins(at, limit)
        assert all(one.mark_taken_in(item.ticket_id, at) for item in expected)
        assert batched.take_in(at, limit) == expected
    assert len(expected) == 40 - 6 - 2 - 15  # six are due later, two were not waiting
    assert batched.take_in(at, 100) == one.due_take_ins(at, 100) == []
    assert _take_in_rows(batched) == _take_in_rows(one)
    events = [e for e in batched.recent_events(1000) if e.kind == EventKind.TAKEN_IN.value]
    assert len(events) == len({e.ticket_id for e in events}) == 40 - 6 - 1


def test_a_ticket_taken_in_by_someone_else_after_the_select_is_neither_returned_nor_evented(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _backlog(store, 10)
    at = NOW + timedelta(hours=1)
    selected: list[int] = []

    def racing(conn: Connection, now: datetime, limit: int, *, lock: bool = False) -> list[TakeInItem]:
        items = real(conn, now, limit, lock=lock)
        selected.extend(item.ticket_id for item in items)
        # Between the SELECT and the UPDATE another caller takes one in and an operator resolves another.
        conn.execute(update(Ticket).where(Ticket.id == items[1].ticket_id).values(taken_in_at=NOW))
        conn.execute(update(Ticket).where(Ticket.id == items[4].ticket_id)
                     .values(state=TicketState.RESOLVED.value, resolved_at=NOW))
        return items

    real = ticket_ops.due_take_ins
    monkeypatch.setattr(ticket_ops, "due_take_ins", racing)
    taken = store.take_in(at, 100)
    assert [item.ticket_id for item in taken] == [i for n, i in enumerate(selected) if n not in (1, 4)]
    evented = [e.ticket_id for e in store.recent_events(1000) if e.kind == EventKind.TAKEN_IN.value]
    assert evented == [item.ticket_id for item in taken]  # one each, in due order
    with store.engine.connect() as conn:
        marks = {row.id: row.taken_in_at for row in conn.execute(select(Ticket.id, Ticket.taken_in_at))}
    assert marks[selected[1]] == NOW and marks[selected[4]] is None
    assert {marks[item.ticket_id] for item in taken} == {at}


# ---------------------------------------------------------------- quarantine


def test_quarantine_list_retry_and_release(store: Store) -> None:
    broken = raw_message("<bad@x>", body="=?x?")
    key = dedupe_key(broken)
    first = store.record_quarantine("uid:7", broken, len(broken), "ParseError: boom", NOW, dedupe_key=key)
    # The same message copied back into INBOX refreshes its entry.
    again = store.record_quarantine("uid:9", broken, len(broken), "ParseError: boom", NOW, dedupe_key=key)
    other = store.record_quarantine("uid:8", None, 10**9, "too big", NOW)
    assert first == again != other
    listed = store.quarantine_list()
    assert [(q.id, q.source_id, q.raw, q.state) for q in listed] == [
        (first, "uid:9", None, QuarantineState.QUARANTINED), (other, "uid:8", None, QuarantineState.QUARANTINED)]
    entry = store.get_quarantine(first)
    assert entry is not None and entry.raw == broken and entry.error == "ParseError: boom"

    assert store.request_retry(first, NOW, by="operator")
    assert not store.request_retry(first, NOW)
    [pending] = store.pending_retries()
    assert pending.id == first and pending.raw == broken
    # The retry fails again: back to quarantined with the new error.
    assert store.record_quarantine("uid:9", broken, len(broken), "still broken", NOW, retry_of=first) == first
    assert store.pending_retries() == ()
    assert store.request_retry(first, NOW)
    result = store.record_intake(intake(1, quarantine_id=first), ack())
    assert result.opened
    retried = store.get_quarantine(first)
    assert retried is not None and retried.state is QuarantineState.RETRIED
    assert store.release_quarantine(other, NOW, by="operator")
    assert not store.release_quarantine(other, NOW)
    assert [q.id for q in store.quarantine_list(QuarantineState.QUARANTINED)] == []
    kinds = [e.kind for e in store.recent_events(100)]
    assert kinds.count("quarantined") == 4 and "retried" in kinds and "released" in kinds


# ---------------------------------------------------------------- events, tickets, state


def test_events_are_append_only(store: Store) -> None:
    result = store.record_intake(intake(1), ack())
    assert result.ticket is not None
    before = store.recent_events(100)
    for statement in ("UPDATE events SET kind = 'x'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(text(statement))
    assert store.resolve(result.ticket.reference, NOW, by="operator", reasons=("done",),
                         replies=ack(kind="resolution")(result.ticket))
    assert not store.resolve(result.ticket.reference, NOW)
    assert store.reopen(result.ticket.reference, NOW, by="operator")
    assert not store.reopen(result.ticket.reference, NOW)
    after = store.recent_events(100)
    assert after[:len(before)] == before
    assert [e.kind for e in after[len(before):]] == ["resolved", "queued", "reopened"]


def test_the_ticket_carries_the_review_reason(store: Store) -> None:
    unsure = store.record_intake(intake(1, review="category other decided from the subject alone"), ack())
    sure = store.record_intake(intake(2), ack())
    assert unsure.ticket is not None and sure.ticket is not None
    reviews = {t.reference: t.review for t in store.queue()}
    assert reviews == {unsure.ticket.reference: "category other decided from the subject alone",
                       sure.ticket.reference: None}


def test_resolve_and_reopen_change_the_queue(store: Store) -> None:
    a = store.record_intake(intake(1, priority=2), ack())
    b = store.record_intake(intake(2, priority=1), ack())
    assert a.ticket is not None and b.ticket is not None
    assert [t.reference for t in store.queue()] == [b.ticket.reference, a.ticket.reference]
    assert store.resolve(b.ticket.reference, NOW + timedelta(hours=1))
    assert [t.reference for t in store.queue()] == [a.ticket.reference]
    resolved = store.ticket(b.ticket.reference)
    assert resolved is not None and resolved.state is TicketState.RESOLVED
    assert resolved.resolved_at == NOW + timedelta(hours=1)
    assert len(store.queue(state=None)) == 2
    assert not store.resolve("HD-1999-000001", NOW)
    assert store.ticket("HD-1999-000001") is None and store.ticket_story("nope") is None


def test_state_heartbeats_and_digest_periods(store: Store) -> None:
    assert store.get_state("poller.uidvalidity") is None
    store.set_state("poller.uidvalidity", "1", NOW)
    store.set_state("poller.uidvalidity", "2\x00", NOW + timedelta(seconds=1))
    entry = store.get_state("poller.uidvalidity")
    assert entry is not None and entry.value == "2" and entry.updated_at == NOW + timedelta(seconds=1)
    store.heartbeat("poller", NOW, "idle")
    store.heartbeat("sender", NOW, "3 pending")
    assert [(h.key, h.value) for h in store.heartbeats()] == [("heartbeat:poller", "idle"),
                                                               ("heartbeat:sender", "3 pending")]
    digest = ack("digest@ateneo.example.it", kind="digest")(None)
    assert store.record_digest("2027-03-01", NOW, digest)
    assert not store.record_digest("2027-03-01", NOW, ack(kind="digest")(None))
    assert [o.kind for o in store.outbox()] == ["digest"]
    assert [s.key for s in store.states("digest:")] == ["digest:2027-03-01"]


def test_stats_count_the_period(store: Store) -> None:
    store.record_intake(intake(1), ack())
    store.record_intake(intake(2, category=Category.OTHER), ack())
    store.record_intake(intake(3, decision=Decision.IGNORED), no_replies)
    store.record_quarantine("uid:9", b"x", 1, "boom", NOW)
    for item in store.claim_outbox(NOW, 10, "s", 60, LIMITS):
        store.mark_sent(item.id, NOW)
    store.take_in(NOW)
    stats = store.stats(NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert stats.messages_by_kind == (("ignored", 1), ("new", 2))
    assert stats.tickets_by_category == (("anagrafica", 1), ("other", 1))
    assert (stats.tickets_opened, stats.tickets_taken_in, stats.replies_sent) == (2, 2, 2)
    assert (stats.open_now, stats.waiting_take_in_now, stats.quarantined_now) == (2, 0, 1)
    assert stats.outbox_by_state_now == (("sent", 2),)
    empty = store.stats(NOW + timedelta(days=1), NOW + timedelta(days=2))
    assert empty.messages_by_kind == () and empty.tickets_opened == 0


def test_event_kinds_written_are_declared() -> None:
    assert {k.value for k in EventKind} >= {"received", "held", "taken_in", "acknowledged", "followup"}


# ---------------------------------------------------------------- PostgreSQL concurrency


def _blocked_on_lock(pg_url: str) -> Callable[[], bool]:
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")

    def check() -> bool:
        with psycopg.connect(conninfo) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND datname = current_database()").fetchone()
            return row is not None and row[0] > 0
    return check


def test_two_daemons_recording_the_same_message_make_one_ticket(pg_url: str, pg_store: Store) -> None:
    inside = threading.Event()
    release = threading.Event()

    def slow(ticket: TicketRef | None) -> tuple[OutgoingMail, ...]:
        inside.set()
        assert release.wait(30), "test hang guard"
        return ack()(ticket)

    with Store(pg_url, timezone=ROME) as second:
        results: dict[str, IntakeResult] = {}
        first = threading.Thread(target=lambda: results.setdefault("a", pg_store.record_intake(intake(1), slow)))
        first.start()
        assert inside.wait(30), "test hang guard"
        other = threading.Thread(target=lambda: results.setdefault("b", second.record_intake(intake(1), ack())))
        other.start()
        # The second daemon's insert waits on the first one's uncommitted row ...
        assert wait_until(_blocked_on_lock(pg_url), 30)
        release.set()
        first.join(30)
        other.join(30)
    assert results["a"].opened and results["b"] == IntakeResult(duplicate=True)
    assert table_counts(pg_store)["tickets"] == 1 and table_counts(pg_store)["outbox"] == 1


def _in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(0..count-1)`` in threads; re-raise the first failure in the test."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "test hang guard"
    if errors:
        raise errors[0]


def test_concurrent_intakes_get_distinct_gap_free_references(db_url: str, store: Store) -> None:
    stores = [Store(db_url, timezone=ROME) for _ in range(4)]
    refs: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        for n in range(index * 10, index * 10 + 10):
            result = stores[index].record_intake(intake(n), ack())
            assert result.ticket is not None
            with lock:
                refs.append(result.ticket.reference)
        # Everybody also records one shared message: it is recorded once.
        shared = stores[index].record_intake(intake(999), ack())
        if not shared.duplicate:
            assert shared.ticket is not None
            with lock:
                refs.append(shared.ticket.reference)

    _in_threads(4, work)
    for s in stores:
        s.close()
    assert sorted(refs) == [f"HD-2027-{n:06d}" for n in range(1, 42)]
    assert table_counts(store)["tickets"] == 41


def test_a_claim_skips_replies_another_claimer_holds(pg_url: str, pg_store: Store) -> None:
    for n in range(10):
        pg_store.record_intake(intake(n, sender=f"user{n}@ateneo.example.it"), ack(f"user{n}@ateneo.example.it"))
    # Another sender is in the middle of its claim: its rows are skipped, not waited for.
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        locked = conn.execute(text("SELECT id FROM outbox ORDER BY id LIMIT 5 FOR UPDATE")).scalars().all()
        mine = pg_store.claim_outbox(NOW, 100, "b", 60, LIMITS)
        assert len(mine) == 5 and not set(locked) & {i.id for i in mine}
    engine.dispose()
    assert len(pg_store.claim_outbox(NOW, 100, "b", 60, LIMITS)) == 5


def test_a_take_in_skips_tickets_another_daemon_holds(pg_url: str, pg_store: Store) -> None:
    _backlog(pg_store, 10)
    at = NOW + timedelta(hours=1)
    engine = create_engine(pg_url)
    with engine.begin() as conn:  # another daemon in the middle of its take-in
        locked = conn.execute(text("SELECT id FROM tickets WHERE take_in_at <= :at ORDER BY id LIMIT 3 FOR UPDATE"),
                              {"at": at}).scalars().all()
        mine = pg_store.take_in(at, 100)
        assert len(mine) == 5 and not set(locked) & {i.ticket_id for i in mine}
        conn.execute(update(Ticket).where(Ticket.id.in_(locked)).values(taken_in_at=at))
    engine.dispose()
    assert pg_store.take_in(at, 100) == []
    evented = [e.ticket_id for e in pg_store.recent_events(1000) if e.kind == EventKind.TAKEN_IN.value]
    assert evented == [i.ticket_id for i in mine]


def test_concurrent_claimers_get_disjoint_replies(db_url: str, store: Store) -> None:
    for n in range(100):
        store.record_intake(intake(n, sender=f"user{n}@ateneo.example.it"), ack(f"user{n}@ateneo.example.it"))
    stores = [Store(db_url) for _ in range(4)]
    claims: list[list[int]] = [[] for _ in stores]

    def work(index: int) -> None:
        while batch := stores[index].claim_outbox(NOW, 3, f"sender-{index}", 60, LIMITS):
            claims[index].extend(i.id for i in batch)

    _in_threads(4, work)
    for s in stores:
        s.close()
    every = [i for c in claims for i in c]
    assert len(every) == len(set(every)) == 100


def test_concurrent_claims_respect_the_brake_for_one_sender(db_url: str, store: Store) -> None:
    _queue_acks(store, 30)
    stores = [Store(db_url) for _ in range(3)]
    got: list[int] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        while batch := stores[index].claim_outbox(NOW, 2, f"s{index}", 60, LIMITS):
            with lock:
                got.extend(i.id for i in batch)

    _in_threads(3, work)
    for s in stores:
        s.close()
    assert len(got) == len(set(got)) == 20
    assert len(store.outbox(OutboxState.HELD)) == 10


def test_concurrent_take_ins_and_migrations(db_url: str, store: Store) -> None:
    for n in range(30):
        store.record_intake(intake(n), ack())
    stores = [Store(db_url) for _ in range(3)]
    taken: list[int] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        stores[index].migrate()
        while batch := stores[index].take_in(NOW, 4):
            with lock:
                taken.extend(i.ticket_id for i in batch)

    _in_threads(3, work)
    for s in stores:
        s.close()
    assert sorted(taken) == sorted(set(taken)) and len(taken) == 30


def test_fresh_databases_migrate_concurrently(db_url: str) -> None:
    _in_threads(3, lambda _: upgrade(db_url))
    with Store(db_url) as store:
        assert store.revision() == head_revision()


def test_connections_racing_to_switch_a_new_sqlite_file_to_wal_all_succeed(tmp_path: Path) -> None:
    """What every maild connection does first, by three connections at once on a new file: SQLite
    refuses all but one at once, without waiting, so without the retry about one round in three fails."""
    for round_ in range(30):
        path = tmp_path / f"race{round_}.db"
        start = threading.Barrier(3)
        modes: list[str] = []

        def connect(path: Path = path, start: threading.Barrier = start, modes: list[str] = modes) -> None:
            raw = sqlite3.connect(path, check_same_thread=False)
            try:
                start.wait()
                configure_sqlite_connection(raw, None)
                modes.append(raw.execute("PRAGMA journal_mode").fetchone()[0])
            finally:
                raw.close()

        threads = [threading.Thread(target=connect) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert modes == ["wal"] * 3
