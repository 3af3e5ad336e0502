"""PINs of the Administrations: slow salted hashes, and which role a typed PIN opens.

The help desk hands out four-digit PINs, so a stolen hash falls to ten
thousand guesses whatever the hash; scrypt makes each guess cost, and the
lockout (``maild.web``) makes guessing on line useless. The hash describes
itself (``scrypt$n=...,r=...,p=...$salt$hash``), so its cost can be raised
later without breaking the hashes already handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Final

from maild.records import PinRole

N: Final = 2**14
R: Final = 8
P: Final = 1
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
_FORMAT: Final = re.compile(r"scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
_MAX_N: Final = 2**20
"""Above this a configured hash would cost more memory than a help desk machine should give one check."""


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """The self-describing scrypt hash of ``pin`` with a fresh random salt."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = _scrypt(pin, salt, N, R, P)
    return f"scrypt$n={N},r={R},p={P}${_b64(salt)}${_b64(digest)}"


def check_hash(value: str) -> str | None:
    """Why ``value`` is not a hash ``verify_pin`` can use, or None when it is."""
    match = _FORMAT.fullmatch(value)
    if match is None:
        return "is not a hash printed by `maild pin hash` (scrypt$n=...,r=...,p=...$salt$hash)"
    n, r, p = (int(match[i]) for i in (1, 2, 3))
    if n < 2 or n & (n - 1) or n > _MAX_N or not 0 < r <= 64 or not 0 < p <= 16:
        return "has scrypt parameters out of range"
    try:
        base64.b64decode(match[4], validate=True)
        base64.b64decode(match[5], validate=True)
    except ValueError:
        return "has a salt or hash that is not base64"
    return None


def verify_pin(pin: str, stored: str) -> bool:
    """Whether ``pin`` hashes to ``stored``; compared in constant time. A bad hash never matches."""
    match = _FORMAT.fullmatch(stored)
    if match is None or check_hash(stored) is not None:
        return False
    n, r, p = (int(match[i]) for i in (1, 2, 3))
    expected = base64.b64decode(match[5])
    return hmac.compare_digest(_scrypt(pin, base64.b64decode(match[4]), n, r, p, len(expected)), expected)


def pin_role(pin: str, referente_hash: str | None, users_hash: str | None) -> PinRole | None:
    """The role ``pin`` opens, the more privileged when it matches both; None when it matches neither.

    Both hashes are always checked, so the time taken does not tell which role a wrong PIN missed.
    """
    referente = verify_pin(pin, referente_hash) if referente_hash else False
    users = verify_pin(pin, users_hash) if users_hash else False
    if referente:
        return PinRole.REFERENTE
    return PinRole.USERS if users else None


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int, length: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=128 * r * (n + p + 2) + 1024 * 1024)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
