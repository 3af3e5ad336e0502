"""A small, strict reader of Authentication-Results headers (RFC 8601).

Only what authorization needs: the authserv-id and, per result, the method,
the result and the ``ptype.property=value`` pairs. Comments are removed before
anything is read, so text such as ``(dmarc=pass)`` inside a comment or a
reason can never be mistaken for a result. Anything that does not parse
yields no results: the authorizer then fails closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[^\s;=]+|=|;')


@dataclass(frozen=True, slots=True)
class MethodResult:
    method: str
    result: str
    properties: tuple[tuple[str, str], ...]

    def prop(self, name: str) -> str | None:
        for key, value in self.properties:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class AuthResults:
    authserv_id: str
    results: tuple[MethodResult, ...]


def strip_comments(value: str) -> str:
    """Remove RFC 5322 comments (nested, with quoted-pairs), keeping quoted strings."""
    if "(" not in value:
        return value  # no comment opens: every character is kept
    out: list[str] = []
    depth = 0
    in_quote = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if in_quote:
            in_quote = char != '"'
            out.append(char)
        elif char == '"' and depth == 0:
            in_quote = True
            out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
            out.append(" ")
        elif depth == 0:
            out.append(char)
    return "".join(out)


def parse_auth_results(value: str) -> AuthResults | None:
    """Parse one header value; None when it is not readable at all."""
    tokens = _TOKEN.findall(strip_comments(value))
    if not tokens or tokens[0] in {";", "="}:
        return None
    authserv_id = tokens[0].lower()
    segments = _segments(tokens[1:])
    if segments and segments[0] and segments[0][0].isdigit() and len(segments[0]) == 1:
        segments = segments[1:]  # optional authres-version after the authserv-id
    elif segments and segments[0]:
        return None  # junk between the authserv-id and the first ';'
    results = tuple(r for r in (_method_result(s) for s in segments[1:]) if r is not None)
    return AuthResults(authserv_id=authserv_id, results=results)


def _segments(tokens: list[str]) -> list[list[str]]:
    segments: list[list[str]] = [[]]
    for token in tokens:
        if token == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


def _method_result(tokens: list[str]) -> MethodResult | None:
    """``method[/version] = result [reason=...] ptype.prop=value ...``"""
    if len(tokens) < 3 or tokens[1] != "=":
        return None
    method = tokens[0].split("/", 1)[0].lower()
    result = tokens[2].lower()
    properties: list[tuple[str, str]] = []
    rest = tokens[3:]
    for i in range(len(rest) - 2):
        if rest[i + 1] == "=" and rest[i] != "=" and rest[i + 2] != "=":
            properties.append((rest[i].lower(), rest[i + 2].strip('"')))
    return MethodResult(method=method, result=result, properties=tuple(properties))
