"""Realistic Salesforce record ids: 15 case-sensitive characters plus the 3-character checksum suffix."""

from __future__ import annotations

import itertools
import re
import threading

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
ID_RE = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-5]{3})?$")
ORG_ID = "00D5g00000EmuLtR"[:15]


def checksum(id15: str) -> str:
    """The suffix Salesforce appends to make a 15-character id case-insensitively unique."""
    out = []
    for chunk in range(3):
        flags = 0
        for pos, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                flags |= 1 << pos
        out.append(SUFFIX_ALPHABET[flags])
    return "".join(out)


def to18(value: str) -> str:
    return value + checksum(value) if len(value) == 15 else value


def normalize(value: object) -> str | None:
    """An 18-character id for a 15- or 18-character id string, else None."""
    if not isinstance(value, str) or not ID_RE.match(value):
        return None
    id15 = value[:15]
    if len(value) == 18 and value[15:].upper() != checksum(id15).upper():
        return None
    return id15 + checksum(id15)


def _base62(n: int, width: int) -> str:
    chars = []
    for _ in range(width):
        n, rem = divmod(n, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars))


class IdFactory:
    """Thread-safe id generator; ids carry the object's key prefix (001 Account, 003 Contact, ...)."""

    def __init__(self, start: int = 1) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def new(self, prefix: str) -> str:
        with self._lock:
            n = next(self._counter)
        return to18(prefix + "5g000" + _base62(n, 7))


ORG_ID_18 = to18(ORG_ID)
USER_ID_18 = to18("0055g00000EmuUs")
