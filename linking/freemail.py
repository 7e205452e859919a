"""The free-mail domain list (`linking/data/freemail_domains.txt`): addresses that never match an account."""

from __future__ import annotations

from functools import cache
from pathlib import Path

DOMAINS_FILE = Path(__file__).resolve().parent / "data" / "freemail_domains.txt"


@cache
def freemail_domains() -> frozenset[str]:
    lines = DOMAINS_FILE.read_text().splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def is_freemail(domain: str) -> bool:
    return domain.strip().lower() in freemail_domains()


def email_domain(email: str) -> str:
    """The normalised domain of an address ('' when there is none)."""
    _, _, domain = email.strip().lower().rpartition("@")
    return domain
