"""Optional secrets (CONTRACT §1): a weak or malformed one counts as none; it never stops the engine.

The webhook secrets, the Marketo token and the metrics token guard something the engine can run
without. One that cannot be used safely (too short to resist guessing, not a `whsec_` key) is treated
as unset: its endpoint answers 503 `not_configured` (`/metrics` 404 to scrapers) and `manage.py check`
warns with the reason. An *error* here would stop `migrate`, `qcluster` and every command for the sake
of one optional integration. settings.py applies these rules when it reads the environment; this
module imports nothing from Django for that reason.
"""

from __future__ import annotations

import base64
import binascii

#: Bearer tokens shorter than this could be guessed.
MIN_TOKEN_LENGTH = 24
#: Decoded `whsec_` keys shorter than this are too weak to sign with.
MIN_WHSEC_BYTES = 16


def whsec_problem(value: str) -> str | None:
    """Why a `whsec_…` key list is unusable, or None when every key decodes."""
    for key in value.split():
        if not key.startswith("whsec_"):
            return f"key {key[:4]}… does not start with 'whsec_'"
        try:
            decoded = base64.b64decode(key.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            return "the part after 'whsec_' is not valid base64"
        if len(decoded) < MIN_WHSEC_BYTES:
            return f"the key is shorter than {MIN_WHSEC_BYTES} bytes (use 24 to 64 random bytes)"
    return None


def stripe_secret_problem(value: str) -> str | None:
    return None if value.startswith("whsec_") else "it does not start with 'whsec_'"


def token_problem(value: str) -> str | None:
    if len(value) < MIN_TOKEN_LENGTH:
        return f"it is shorter than {MIN_TOKEN_LENGTH} characters and could be guessed"
    return None


def optional_secret(name: str, value: str, ignored: dict[str, str]) -> str:
    """The usable part of an optional secret ("" for none); why anything was dropped goes into `ignored`.

    A provisioning key list keeps its good keys (rotation goes on) and drops the bad ones.
    """
    value = value.strip()
    if not value:
        return ""
    if name == "PROVISIONING_WEBHOOK_SECRET":
        good = [key for key in value.split() if whsec_problem(key) is None]
        problem = whsec_problem(value)
        if problem:
            ignored[name] = problem
        return " ".join(good)
    problem = stripe_secret_problem(value) if name == "STRIPE_WEBHOOK_SECRET" else token_problem(value)
    if problem:
        ignored[name] = problem
        return ""
    return value


def secret_problem(name: str, value: str) -> str | None:
    """Why a configured value would be ignored (for the system check), or None."""
    if not value:
        return None
    if name == "PROVISIONING_WEBHOOK_SECRET":
        return whsec_problem(value)
    if name == "STRIPE_WEBHOOK_SECRET":
        return stripe_secret_problem(value)
    return token_problem(value)
