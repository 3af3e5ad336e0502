"""The floor: the work no help desk daemon can avoid, done as simply as possible.

Fetch every message with imapclient (``BODY.PEEK[]``, in batches of the size
maild uses), parse each with the parser maild uses, and send one small reply
per message over one reused SMTP connection. No database, no triage, no
templates, no moves: what is left is the price of the protocols and the
parser, which is what maild's backlog rate is compared with.

It runs as a process of its own (``python -m bench.floor JOB_JSON OUT_JSON``), timed from
spawn to exit exactly like ``maild run --once``, so both pay for an
interpreter start and their imports. It writes one JSON object: the count and
the seconds spent in each step.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imapclient import IMAPClient

from maild.mail.parsing import parse_message
from maild.poller import quiet_imaplib
from maild.settings import Limits

FALLBACK_RCPT = "requester@example.test"


@dataclass(frozen=True, slots=True)
class FloorJob:
    imap_host: str
    imap_port: int
    ca_file: str
    user: str
    password: str
    smtp_port: int
    batch_size: int = 200


@dataclass(frozen=True, slots=True)
class FloorReport:
    messages: int
    fetch_s: float
    parse_s: float
    send_s: float
    total_s: float


def reply_for(to: str, message_id: str, index: int) -> bytes:
    """A small plain reply, the size of a short acknowledgment."""
    return (
        f"From: Help Desk <helpdesk@example.test>\r\nTo: {to}\r\nSubject: Re: richiesta {index}\r\n"
        f"Message-ID: <floor.{index}@example.test>\r\nIn-Reply-To: {message_id}\r\n"
        f"Auto-Submitted: auto-replied\r\n\r\nAbbiamo ricevuto la sua richiesta.\r\n"
    ).encode()


def run(job: FloorJob) -> FloorReport:
    limits = Limits()
    fetch_s = parse_s = send_s = 0.0
    count = 0
    start = time.monotonic()
    context = ssl.create_default_context(cafile=job.ca_file)
    with IMAPClient(job.imap_host, job.imap_port, ssl=False, timeout=60) as imap:
        quiet_imaplib(imap)  # what maild does too: no repr of every body for a discarded debug log
        imap.starttls(context)
        imap.login(job.user, job.password)
        imap.select_folder("INBOX", readonly=True)
        uids = sorted(imap.search(["NOT", "DELETED"]))
        smtp = smtplib.SMTP("127.0.0.1", job.smtp_port, timeout=60)
        smtp.ehlo()
        for first in range(0, len(uids), job.batch_size):
            t0 = time.monotonic()
            bodies = imap.fetch(uids[first:first + job.batch_size], ["BODY.PEEK[]"])
            t1 = time.monotonic()
            fetch_s += t1 - t0
            for uid in uids[first:first + job.batch_size]:
                t1 = time.monotonic()
                message = parse_message(bytes(bodies[uid][b"BODY[]"]), limits)
                t2 = time.monotonic()
                to = message.from_addresses[0].addr if message.from_addresses else FALLBACK_RCPT
                smtp.sendmail("", [to], reply_for(to, message.message_id, count))
                send_s += time.monotonic() - t2
                parse_s += t2 - t1
                count += 1
            del bodies
        smtp.quit()
    return FloorReport(count, fetch_s, parse_s, send_s, time.monotonic() - start)


if __name__ == "__main__":
    report = run(FloorJob(**json.loads(sys.argv[1])))
    Path(sys.argv[2]).write_text(json.dumps(asdict(report)), encoding="utf-8")
