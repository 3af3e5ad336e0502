"""Builders of hostile messages, as raw bytes, for parser and daemon tests.

Each shape is one that real mail (spam, broken mailers, attackers) sends and that
has hurt parsers before: quadratic header decoding, recursion, part floods, codec
tricks, broken transfer encodings, absurd dates, header injection, NUL bytes,
8-bit where 7-bit is due, and attachments big enough to blow memory.
"""

from __future__ import annotations

import base64

HELPDESK = "helpdesk-posta@servizi.example.it"
SENDER = "mario.rossi@ateneo.example.it"


def message(
    body: bytes = b"Buongiorno,\nprova.\n",
    *,
    headers: tuple[tuple[str, str], ...] = (),
    subject: str = "Prova",
    from_: str = f"Mario Rossi <{SENDER}>",
    date: str = "Mon, 19 Apr 2027 14:02:00 +0200",
    content_type: str = "text/plain; charset=utf-8",
    extra: bytes = b"",
) -> bytes:
    """A plain message; ``headers`` go first, ``extra`` is raw header bytes added last."""
    lines = [f"{name}: {value}" for name, value in headers]
    lines += [
        f"From: {from_}",
        f"To: Helpdesk Posta <{HELPDESK}>",
        f"Subject: {subject}",
        f"Date: {date}",
        "Message-ID: <hostile-test@ateneo.example.it>",
        "MIME-Version: 1.0",
        f"Content-Type: {content_type}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8") + extra + b"\r\n" + body


def nested_multiparts(depth: int = 1000) -> bytes:
    """``depth`` multiparts, each inside the previous: the stdlib parser recurses per level."""
    opening = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    inner = b"--b%d\r\nContent-Type: text/plain\r\n\r\nfondo\r\n--b%d--\r\n" % (depth, depth)
    closing = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return message(opening + inner + closing, content_type='multipart/mixed; boundary="b0"')


def many_parts(count: int = 5000) -> bytes:
    """One multipart with ``count`` small attachments."""
    part = b"--flood\r\nContent-Type: application/octet-stream; name=\"p%d.bin\"\r\n\r\nxx\r\n"
    body = b"--flood\r\nContent-Type: text/plain\r\n\r\nTesto principale\r\n"
    body += b"".join(part % i for i in range(count)) + b"--flood--\r\n"
    return message(body, content_type='multipart/mixed; boundary="flood"')


def malformed_encoded_subject(size: int = 480_000) -> bytes:
    """A Subject of encoded-words glued to text: quadratic in the stdlib header parser."""
    unit = "=?utf-8?q?a?=x=?utf-8?b?!!?==?"
    return message(subject=(unit * (size // len(unit) + 1))[:size])


def huge_header(size: int = 2_000_000) -> bytes:
    """One folded header field of ``size`` bytes before the ordinary ones."""
    folded = "\r\n\t".join(["x" * 76] * (size // 79 + 1))
    return message(headers=(("X-Junk", folded),))


def broken_charset(charset: str) -> bytes:
    """``charset`` declared for the body, an encoded-word subject and a filename.

    Use names that are unknown (``x-unknown``) or not text codecs at all
    (``unicode-escape``, ``rot13``, ``idna``, ``base64``, ``zlib``): a parser must
    neither raise ``LookupError`` nor run them.
    """
    attachment = (
        f"--cs\r\nContent-Type: application/pdf\r\n"
        f"Content-Disposition: attachment; filename*={charset}''modulo%5Cx41.pdf\r\n\r\nJVBERi0=\r\n"
    ).encode()
    text = (
        f"--cs\r\nContent-Type: text/plain; charset=\"{charset}\"\r\n\r\n"
    ).encode() + b"Caff\xe8 \\x41 \\N{BULLET} \\u0000 fine\r\n"
    return message(
        text + attachment + b"--cs--\r\n",
        subject=f"=?{charset}?q?Caff=E8_\\x41?= =?{charset}?b?Q2lhbw==?=",
        content_type='multipart/mixed; boundary="cs"',
    )


BROKEN_CHARSETS = ("x-unknown", "unicode-escape", "rot13", "idna", "base64", "zlib", "undefined", "bogus\"")


def broken_base64() -> bytes:
    """Base64 with junk characters, padding in the middle and a truncated last quad."""
    body = b"SGVsbG8g!!V29y*bGQ=\r\nQ2lhbyBh\r\nbW\xffljaQ\r\nQ"
    return message(body, headers=(("Content-Transfer-Encoding", "base64"),))


def broken_quoted_printable() -> bytes:
    """Quoted-printable with bad escapes, a lone '=' and a soft break at the end."""
    body = b"Caff=E8 =ZZ prezzo 10=\r\n0 =\r\nfine =4"
    return message(
        body,
        content_type="text/plain; charset=iso-8859-1",
        headers=(("Content-Transfer-Encoding", "quoted-printable"),),
    )


ABSURD_DATES = (
    "Mon, 1 Jan 99999 00:00:00 +0000",
    "Tue, 30 Feb 2027 10:00:00 +0100",
    "Fri, 31 Dec 9999 23:59:59 -2359",
    "Mon, 1 Jan 0001 00:00:00 +2359",
    "Mon, 19 Apr 2027 14:02:00 +9999",
    "Mon, 19 Apr 2027 99:99:99 +0200",
    "Mon, 19 Apr 2027 14:02:00 +99999999999999999999",
    "1" * 5000,
    "",
)


def absurd_date(value: str) -> bytes:
    """``value`` as both the Date and the topmost Received timestamp."""
    return message(headers=(("Received", f"from a by b; {value}"),), date=value)


INJECTED = "Ciao\r\nBcc: vittima@example.org\r\n\r\nCorpo iniettato"


def header_injection() -> bytes:
    """Encoded-words that decode to CR/LF plus new header lines, in Subject and From."""
    word = base64.b64encode(INJECTED.encode()).decode()
    name = base64.b64encode(b"Mario\r\nReply-To: x@evil.example").decode()
    return message(subject=f"=?utf-8?b?{word}?=", from_=f"=?utf-8?b?{name}?= <{SENDER}>")


def nul_bytes() -> bytes:
    """NUL bytes in a header and in the body (PostgreSQL refuses them in text)."""
    return message(b"Buon\x00giorno\x00\r\n", extra=b"X-Note: a\x00b\r\n", subject="Pro\x00va")


def eight_bit_headers() -> bytes:
    """Raw UTF-8 in Subject and From, and raw Latin-1 in a second header."""
    return message(
        subject="Città e perché",
        from_=f"Niccolò Ré <{SENDER}>",
        extra=b"X-Legacy: Citt\xe0 \xe8\r\nComments: caf\xe9\r\n",
    )


def rfc822_with_8bit() -> bytes:
    """A forwarded message/rfc822 part whose own body is raw 8-bit Latin-1."""
    inner = (
        b"From: Altro <altro@example.org>\r\nSubject: Citt\xe0\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"Perch\xe9 s\xec, caff\xe8\r\n"
    )
    body = (
        b"--fw\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVi inoltro il messaggio.\r\n"
        b"--fw\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + inner + b"--fw--\r\n"
    )
    return message(body, content_type='multipart/mixed; boundary="fw"')


def big_attachment(size: int = 25 * 1024 * 1024) -> bytes:
    """A short text and one base64 attachment of ``size`` decoded bytes."""
    payload = base64.encodebytes(bytes(range(256)) * (size // 256) + b"\x00" * (size % 256))
    body = (
        b"--big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nIn allegato il file.\r\n"
        b"--big\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"archivio.bin\"\r\n\r\n"
        + payload.replace(b"\n", b"\r\n") + b"--big--\r\n"
    )
    return message(body, content_type='multipart/mixed; boundary="big"')


def html_bomb(size: int = 400_000) -> bytes:
    """HTML-only body of unclosed nested lists and quotes, half-open tags, unclosed
    heads and, at the end, an unclosed comment.

    html2text (over the stdlib HTMLParser) is quadratic on each of these.
    """
    unit = "<ul><li><ol><li>x<a<blockquote><dl><dd>y"
    tail = "<head>" * (size // 12) + "<!--" * (size // 8)
    html = "<p>Testo visibile</p>" + unit * (size // len(unit)) + tail
    return message(html.encode(), content_type="text/html; charset=utf-8")


def ambiguous_from(value: str) -> bytes:
    """A message whose From field is ``value`` exactly as written."""
    return message(from_=value)
