"""Where incoming mail comes from: the MailSource protocol and its record.

The daemon only ever talks to a ``MailSource``; the IMAP adapter
(``maild.poller.ImapSource``) and the local one (``maild.mail.maildir.MaildirSource``)
hide their protocol behind it, so the pipeline and its tests never see a socket
or a directory.

Error contract of every source:

* ``SourceUnavailable`` — the mailbox is unreachable for now (connection refused
  or dropped, timeout, TLS transport failure, server shutting down, a login the
  server refused with ``[UNAVAILABLE]``). The source has dropped its connection;
  the next call reconnects. ``wait()`` is where backoff happens.
* ``SourceError`` — retrying will not help: bad credentials
  (``[AUTHENTICATIONFAILED]`` and any other refused login), a certificate that
  does not verify, a folder that cannot be selected or created. The daemon
  should stop and say so; the message names the mailbox and the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message waiting in the source.

    ``source_id`` is stable for the life of the message in the source and is the
    exactly-once key: ``"<uidvalidity>:<uid>"`` for IMAP, the Maildir unique
    name (the file name without the ``:2,`` flags suffix) for Maildir.
    ``raw`` is None when the message is larger than the ``max_bytes`` given to
    ``fetch`` and was therefore not downloaded.
    """

    source_id: str
    size: int
    raw: bytes | None
    folder_state: str
    """UIDVALIDITY of the IMAP folder the message was read from; "" for Maildir."""
    arrived_at: datetime | None = None
    """When the mailbox server took the message in (IMAP INTERNALDATE, the Maildir delivery time),
    with its offset: the daemon's received time. None when the source does not know."""


class MailSource(Protocol):
    """A mailbox the daemon drains, files into Processed/Quarantine and waits on."""

    def fetch(self, max_bytes: int) -> Iterator[Incoming]:
        """Yield everything waiting now, oldest first; over ``max_bytes`` -> ``raw`` None."""
        ...

    def mark_processed(self, *items: Incoming) -> None:
        """Move the messages to the processed folder (idempotent).

        Several at once cost one IMAP round trip instead of one each: the
        daemon moves a batch after the commit that recorded it.
        """
        ...

    def quarantine(self, *items: Incoming) -> None:
        """Move the messages to the quarantine folder (idempotent)."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block until new mail may be there (True) or ``timeout`` seconds passed (False)."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        ...

