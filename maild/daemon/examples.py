"""``maild run --seed-examples``: deliver the example requests that no earlier run recorded.

An example recorded before is left out rather than delivered again: the daemon
would only move it (it is never answered twice), and the operator reading the
log would not learn why nothing happened.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maild.mail.keys import dedupe_key
from maild.mail.maildir import make_maildir
from maild.store import Store


@dataclass(frozen=True, slots=True)
class Example:
    """One example file, delivered now or recorded by an earlier run (with its ticket, if it opened one)."""

    path: Path
    delivered: bool
    ticket: str | None = None

    def describe(self) -> str:
        """The line the operator reads about an example an earlier run recorded."""
        name = f"{self.path.parent.name}/{self.path.name}"
        if self.ticket is not None:
            return f"{name}: already answered on a previous run (ticket {self.ticket}); not answered again"
        return (f"{name}: already recorded on a previous run (automatic mail: no ticket, no answer); "
                "not recorded again")


def seed_examples(store: Store, inbox: Path, files: Sequence[Path]) -> tuple[Example, ...]:
    """Deliver into the Maildir ``inbox`` those of ``files`` the database does not know; report on each."""
    examples: list[Example] = []
    for path in sorted(files):
        key = dedupe_key(path.read_bytes())
        if store.is_known(key):
            ticket = store.ticket_of_key(key)
            examples.append(Example(path, delivered=False, ticket=ticket.reference if ticket else None))
        else:
            examples.append(Example(path, delivered=True))
    seed_maildir(inbox, [e.path for e in examples if e.delivered])
    return tuple(examples)


def seed_maildir(inbox: Path, files: Sequence[Path]) -> int:
    """Deliver ``files`` into the Maildir ``inbox`` the way an MTA would (tmp/, then new/)."""
    make_maildir(inbox)
    for index, source in enumerate(sorted(files)):
        name = f"{time.time():.6f}.{uuid.uuid4().hex}_{index}.maild-seed"
        shutil.copyfile(source, inbox / "tmp" / name)
        (inbox / "tmp" / name).rename(inbox / "new" / name)
    return len(files)
