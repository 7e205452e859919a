"""Removing one person from text and JSON: pure functions, no database.

An address becomes the person's placeholder (`erased-<n>@domain`), so records that were linked by it
stay linked to each other. A JSON object that names the person by address loses its personal fields
(names, phone, address); elsewhere their known names are replaced only where the caller says the row
is about them, because a first name alone is not unique.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: Keys of an object about a person that hold more of their personal data.
PERSONAL_KEYS = frozenset(
    {
        "first_name",
        "last_name",
        "name",
        "full_name",
        "phone",
        "address",
        "shipping",
        "customer_name",
        "customer_phone",
        "customer_address",
        "customer_shipping",
        "FirstName",
        "LastName",
        "Phone",
    }
)
ERASED_NAME = "[erased]"


@dataclass(frozen=True)
class Person:
    """Whom to remove: their normalised addresses, the placeholder, and names known from their records."""

    emails: frozenset[str]
    replacement: str
    names: frozenset[str] = field(default_factory=frozenset)

    def email_pattern(self) -> re.Pattern[str]:
        alternatives = "|".join(re.escape(email) for email in sorted(self.emails, key=len, reverse=True))
        return re.compile(alternatives, re.IGNORECASE)

    def name_pattern(self) -> re.Pattern[str] | None:
        names = sorted((n for n in self.names if len(n) >= 2), key=len, reverse=True)
        if not names:
            return None
        return re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b", re.IGNORECASE)


def scrub_text(text: str, person: Person, *, names: bool = False) -> str:
    """The text with the person's addresses (and, with `names`, their names) replaced."""
    if not text:
        return text
    text = person.email_pattern().sub(person.replacement, text)
    pattern = person.name_pattern() if names else None
    if pattern is None:
        return text
    # The placeholder keeps a company domain, which can hold their name (dana@lowell.io): it stays whole,
    # or the stored address would no longer be one and the re-fold would refuse the event.
    return person.replacement.join(pattern.sub(ERASED_NAME, part) for part in text.split(person.replacement))


def _names_the_person(obj: dict, person: Person) -> bool:
    return any(isinstance(v, str) and v.strip().lower() in person.emails for v in obj.values())


def scrub_json(value: Any, person: Person, *, names: bool = False) -> Any:
    """A copy of a JSON value with the person removed; an object naming them loses its personal keys."""
    if isinstance(value, dict):
        blank = _names_the_person(value, person)
        result = {}
        for key, item in value.items():
            if blank and key in PERSONAL_KEYS and key != "email":
                result[key] = "" if isinstance(item, str) else None
            else:
                result[key] = scrub_json(item, person, names=names)
        return result
    if isinstance(value, list):
        return [scrub_json(item, person, names=names) for item in value]
    if isinstance(value, str):
        return scrub_text(value, person, names=names)
    return value


def names_in(value: Any, emails: frozenset[str]) -> set[str]:
    """Names found next to the person's address in JSON objects (a payload's first_name, say)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if any(isinstance(v, str) and v.strip().lower() in emails for v in value.values()):
            found |= {v.strip() for k, v in value.items() if k in PERSONAL_KEYS and k != "email" and isinstance(v, str)}
        for item in value.values():
            found |= names_in(item, emails)
    elif isinstance(value, list):
        for item in value:
            found |= names_in(item, emails)
    return {name for name in found if name}
