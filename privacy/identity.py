"""Recognising a person without keeping who they are: normalised emails and their salted hashes.

The salt comes from PRIVACY_HASH_SALT (config/checks.py refuses production without one). Changing it
orphans every tombstone: erased people would no longer be recognised, so it is set once and kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from linking.freemail import email_domain, is_freemail

#: Loose on purpose: finding an address in any payload matters more than validating it.
EMAIL_RE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")
DEV_SALT = "lifecycle-engine-development-salt"


def normalise_email(value: str) -> str:
    return (value or "").strip().lower()


def hash_salt() -> bytes:
    salt = settings.PRIVACY_HASH_SALT
    if salt:
        return salt.encode()
    if settings.DEBUG or settings.TESTING:
        return DEV_SALT.encode()
    raise ImproperlyConfigured("PRIVACY_HASH_SALT is not set: erasure tombstones need a secret salt.")


def email_hash(email: str) -> str:
    """HMAC-SHA256 of the normalised address: equal for equal people, useless to anyone without the salt."""
    return hmac.new(hash_salt(), normalise_email(email).encode(), hashlib.sha256).hexdigest()


def payload_text(payload: Any) -> str:
    return payload if isinstance(payload, str) else json.dumps(payload, default=str)


def emails_in(payload: Any) -> set[str]:
    """Every address mentioned anywhere in a payload, normalised."""
    text = payload_text(payload)
    if "@" not in text:
        return set()
    return {normalise_email(match) for match in EMAIL_RE.findall(text)}


ERASED_DOMAIN = "erased.invalid"


def placeholder_email(*, tombstone_id: int, email: str) -> str:
    """What an erased address becomes: unique per person. A company domain is kept so the workspace
    stays on its account after a re-fold; a free-mail domain says nothing and becomes erased.invalid."""
    domain = email_domain(email)
    if not domain or is_freemail(domain):
        domain = ERASED_DOMAIN
    return f"erased-{tombstone_id}@{domain}"


PLACEHOLDER_RE = re.compile(r"^erased-\d+@", re.IGNORECASE)


def is_placeholder(email: str) -> bool:
    """An address erasure put in place of a person's (`placeholder_email`): nobody to write to."""
    return bool(PLACEHOLDER_RE.match((email or "").strip()))
