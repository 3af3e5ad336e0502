"""The floor plus the least exactly-once bookkeeping, done serially: a yardstick, not a target.

It does the floor's work (``bench.floor``) and, on top, only what exactly-once
intake and sending cannot skip, with the libraries maild uses and maild's
SQLite durability (WAL, ``synchronous=NORMAL``, the WAL fsynced once per batch):

* per batch, one transaction that records each message (its raw bytes) and
  one queued reply for it; then the fsync; then a MOVE of the batch out of
  INBOX (a message leaves the mailbox only once its record is durable);
* per reply, after the server's 250, its own commit marking it sent.

No triage, tickets, events, templates or logs, and no overlap: one thread, one
step after the other. The gap between this run and the floor is the price of
exactly-once itself on this machine; the gap between maild and this run is
maild's own work, less whatever maild wins back by overlapping.

Run as ``python -m bench.bookkeeping JOB_JSON OUT_JSON DB_PATH`` (``JOB_JSON`` as
for ``bench.floor``); it writes ``{"messages": N}``.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import sys
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from sqlalchemy import Engine, create_engine, event, text

from bench.floor import FALLBACK_RCPT, FloorJob, reply_for
from maild.mail.parsing import parse_message
from maild.poller import quiet_imaplib
from maild.settings import Limits

PROCESSED = "Processed"
_SCHEMA = (
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, raw BLOB NOT NULL)",
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY, message INTEGER NOT NULL REFERENCES messages(id), "
    "state TEXT NOT NULL, data BLOB NOT NULL, sent INTEGER)",
)
_RECORD = text("INSERT INTO messages (message_id, raw) VALUES (:message_id, :raw)")
_QUEUE = text("INSERT INTO outbox (message, state, data) VALUES (:message, 'pending', :data)")
_SENT = text("UPDATE outbox SET state = 'sent', sent = 1 WHERE id = :id")


def open_database(path: Path) -> Engine:
    """maild's SQLite settings: WAL, ``synchronous=NORMAL``, every transaction ``BEGIN IMMEDIATE``."""
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    with engine.begin() as conn:
        for statement in _SCHEMA:
            conn.exec_driver_sql(statement)
    return engine


def fsync_wal(path: Path) -> None:
    fd = os.open(f"{path}-wal", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run(job: FloorJob, database: Path) -> int:
    engine = open_database(database)
    limits = Limits()
    count = 0
    context = ssl.create_default_context(cafile=job.ca_file)
    with IMAPClient(job.imap_host, job.imap_port, ssl=False, timeout=60) as imap:
        quiet_imaplib(imap)
        imap.starttls(context)
        imap.login(job.user, job.password)
        imap.select_folder("INBOX")
        uids = sorted(imap.search(["NOT", "DELETED"]))
        smtp = smtplib.SMTP("127.0.0.1", job.smtp_port, timeout=60)
        smtp.ehlo()
        for first in range(0, len(uids), job.batch_size):
            batch = uids[first:first + job.batch_size]
            bodies = imap.fetch(batch, ["BODY.PEEK[]"])
            queued: list[tuple[int, str, bytes]] = []
            with engine.begin() as conn:
                for uid in batch:
                    raw = bytes(bodies[uid][b"BODY[]"])
                    message = parse_message(raw, limits)
                    to = message.from_addresses[0].addr if message.from_addresses else FALLBACK_RCPT
                    data = reply_for(to, message.message_id, count)
                    recorded = conn.execute(_RECORD, {"message_id": message.message_id, "raw": raw}).lastrowid
                    queued.append((conn.execute(_QUEUE, {"message": recorded, "data": data}).lastrowid, to, data))
                    count += 1
            fsync_wal(database)
            imap.move(batch, PROCESSED)
            del bodies
            for reply_id, to, data in queued:
                smtp.sendmail("", [to], data)
                with engine.begin() as conn:
                    conn.execute(_SENT, {"id": reply_id})
        smtp.quit()
    return count


if __name__ == "__main__":
    done = run(FloorJob(**json.loads(sys.argv[1])), Path(sys.argv[3]))
    Path(sys.argv[2]).write_text(json.dumps({"messages": done}), encoding="utf-8")
