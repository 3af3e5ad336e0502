"""Dedupe keys are stored in databases: the key of a message must never change.

The keys below were computed by the first implementation (two scans of the header
fields, a regular expression match per field), before it was made faster; a
reference written the first way checks random header blocks too.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maild.mail.keys import (
    ORIGINATOR_HEADERS,
    content_hash,
    dedupe_key,
    header_value,
    message_key,
    normalize_raw,
    split_message,
)
from tests import hostile
from tests.factories import REPO

SHAPES = {
    "folded": b"From: a@x\r\nSubject: uno\r\n\tdue\r\n  tre\r\nMessage-ID:\r\n <Fold@X>\r\n\r\ncorpo\r\n",
    "two_message_ids": b"Message-ID: <first@x>\nMessage-ID: <second@x>\nFrom: a@x\n\ncorpo\n",
    "no_header_block": b"solo corpo, niente intestazioni\nseconda riga\n",
    "cr_only": b"From: a@x\rMessage-ID: <cr@x>\rSubject: cr\r\rcorpo\rfine\r",
    "nul": b"From: a@x\r\nMessage-ID: <n\x00ul@x>\r\nSubject: Pro\x00va\r\n\r\nBuon\x00giorno\r\n",
    "empty": b"",
    "headers_only": b"From: a@x\nMessage-ID: <h@x>",
    "mixed_case_names": b"FROM: a@x\nmessage-id: <MiXed@X>\nX-Trace: y\nSUBJECT:  spaced   out \n\nb\n",
    "bad_name_and_continuation_first": b" leading continuation\nBad Name: v\nFrom:a@x\n\nb\n",
    "hostile.nul_bytes": hostile.nul_bytes(),
    "hostile.eight_bit_headers": hostile.eight_bit_headers(),
    "hostile.header_injection": hostile.header_injection(),
    "hostile.rfc822_with_8bit": hostile.rfc822_with_8bit(),
    **{path.name: path.read_bytes() for path in sorted((REPO / "examples").glob("*.eml"))},
}

PINNED = {
    "folded": "876b8b528a8b044a8761ab08647de63342120d9063ab59e8b67f18c6527d6c62",
    "two_message_ids": "67766ca06e87709cada3a6f6100382b4e04711b291a5a7694896057a50899ec7",
    "no_header_block": "24197b8a0854c8938710f078e07aa724bf0037918bf36280afb49cbf64bdf896",
    "cr_only": "c5a1f09f51ac89f7eb6336396b017be644fe0dfc9d570db4da24fced1e6b6cce",
    "nul": "c35e788dccfb6219fcadc895e0e3c498337bf8abdaae5dc032988209ab79a5d9",
    "empty": "3d0ae3567235ca7141852eeb69d360a9ec9bdcdbdd50e2848d279293c815aa55",
    "headers_only": "4c13b69766ac409710e0fcf6ee2bf44ac89fabb1922986628acb2cc4a115368d",
    "mixed_case_names": "72fb4122e3c56b1633d345593a0deae915bbc4ba07e1a3397ca30f84e663ddcf",
    "bad_name_and_continuation_first": "fce600a1843cf173f37d420fd41db96f50ca3e5105d5ea21ecff303bff625edf",
    "hostile.nul_bytes": "9fc47dac7bf6412472df25cacc8b7283653d53fd9e44032b1723904381510e59",
    "hostile.eight_bit_headers": "fc35a95e8365089c590dc316acda1550d33a3935e24c084debfc5fbf4b669434",
    "hostile.header_injection": "7e1094f7c0777e6c8bc162dd73642ef14e5faef61507c992da78a9aef0fb4cd6",
    "hostile.rfc822_with_8bit": "a969129fecfc4ea62a97b5856f096574cd7c6572de7b55293fa8e0d469b8fdbe",
    "01-quota-it.eml": "1e79c2a28675538addee5e8a90c528a493608fff54a861033e5baffc4971329b",
    "02-reset-referente.eml": "9a8967cac9c6aed28be9289500cec15c547ecc9b7a18560a09f3e59d6ec7765d",
    "03-spoofed-delete.eml": "833a58c143c14886f5f9ac76b07609c2598338776f83b293a97954b03552c6e8",
    "04-out-of-office.eml": "0382b5e05beb889960ded9aa7491d9c91b2f242b448c094fcff52c65318c9fd0",
    "05-list-member-en.eml": "20bdcd2e60db641fd3cfc8a68dd378f503337b442af95aeea83821f4d170cc09",
    "06-question.eml": "71980fc6a2e7142395f22cc1f4c8bbd138aa529b29ace2a39485659896c801b0",
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_dedupe_key_of_a_message_never_changes(name: str) -> None:
    assert dedupe_key(SHAPES[name]) == PINNED[name]
    assert dedupe_key(SHAPES[name]) == _reference_key(SHAPES[name])


_HEADER = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.DOTALL)
_WS = re.compile(rb"[ \t\r\n]+")


def _reference_parts(raw: bytes) -> tuple[str, str]:
    """Message-ID and content hash as first computed: one scan for each, a match per field."""
    fields, body = split_message(normalize_raw(raw))
    named = [(m[1].lower(), _WS.sub(b" ", m[2]).strip()) for m in map(_HEADER.match, fields) if m]
    message_id = next((value for name, value in named if name == b"message-id"), b"")
    content = hashlib.sha256()
    for name, value in named:
        if name in ORIGINATOR_HEADERS:
            content.update(name + b":" + value + b"\n")
    content.update(b"\n" + body)
    return message_id.decode("latin-1"), content.hexdigest()


def _reference_key(raw: bytes) -> str:
    message_id, content = _reference_parts(raw)
    return hashlib.sha256(f"{message_key(message_id)}\n{content}".encode()).hexdigest()


NAMES = st.sampled_from([
    *(n.decode() for n in ORIGINATOR_HEADERS), "MESSAGE-ID", "Message-Id", "Subject", "Received", "X-Trace",
    "From ", " From", "Fr om", "From\x0b", "Mess:age-ID", "", "é-From",
])
SEPARATORS = st.sampled_from([":", " :", "\t:", " \t :", "::", "", " "])
VALUES = st.lists(st.sampled_from([" ", "\t", "  ", "<A@B.it>", "x", "\x00", "è", ":", "\x0b", "\xa0"]),
                  max_size=6).map("".join)
ENDS = st.sampled_from(["\r\n", "\n", "\r"])
CONTINUATIONS = st.tuples(st.sampled_from([" ", "\t"]), VALUES).map("".join)
LINES = st.lists(st.tuples(NAMES, SEPARATORS, VALUES, st.lists(CONTINUATIONS, max_size=2)), max_size=10)


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    """A message of random header lines (odd names, blanks, continuation lines, mixed line ends)."""
    lines = draw(LINES)
    end = draw(ENDS)
    text = "".join(name + sep + value + "".join(end + c for c in conts) + end for name, sep, value, conts in lines)
    body = draw(st.sampled_from(["", end, end + "corpo" + end, end + end]))
    return (text + body).encode()


@settings(max_examples=1000, deadline=None)
@given(header_blocks())
def test_a_dedupe_key_is_the_one_first_computed(raw: bytes) -> None:
    assert dedupe_key(raw) == _reference_key(raw)
    message_id, content = _reference_parts(raw)
    assert content_hash(raw) == content
    assert header_value(raw, "Message-ID") == message_id  # what a quarantined message is logged under
