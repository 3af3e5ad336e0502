"""Messages built from the labelled corpus with fresh Message-IDs, for load and crash tests.

Each copy keeps the original's bytes except its Message-ID, so its triage is
the original's (as labelled) while the daemon sees a new message.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from tests.factories import CORPUS

_MESSAGE_ID = re.compile(rb"^Message-ID:[^\r\n]*(\r?\n[ \t][^\r\n]*)*\r?\n", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    """Corpus file it was made from."""
    message_id: str
    raw: bytes
    category: str
    decision: str


def labels() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads((CORPUS / "labels.json").read_text())
    return data


def fresh_copy(raw: bytes, tag: str) -> tuple[str, bytes]:
    """``raw`` with a new Message-ID (added when it had none), CRLF line ends."""
    message_id = f"<{tag}.{uuid.uuid4().hex}@load.example.it>"
    header = f"Message-ID: {message_id}\r\n".encode()
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    replaced, count = _MESSAGE_ID.subn(header, raw, count=1)
    return message_id, replaced if count else header + raw


def corpus_mix(count: int, tag: str = "mix") -> list[Sample]:
    """``count`` messages cycling through the corpus, each with its own Message-ID."""
    table = labels()
    names = sorted(table)
    originals = {name: (CORPUS / name).read_bytes() for name in names}
    samples = []
    for index in range(count):
        name = names[index % len(names)]
        message_id, raw = fresh_copy(originals[name], f"{tag}{index}")
        samples.append(Sample(name, message_id, raw, table[name]["category"], table[name]["decision"]))
    return samples
