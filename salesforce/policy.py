"""What to do about a Salesforce error, decided by its errorCode (never by HTTP status alone)."""

from __future__ import annotations

import enum
from datetime import timedelta

from failures import retry


class Action(enum.Enum):
    RETRY = "retry"  # transient: back off and try again
    REREAD_ONCE = "reread_once"  # a concurrent insert won the race: the next upsert updates it
    PAUSE = "pause"  # the org is out of API calls: pause the whole sync, alert, resume by itself
    DEAD_LETTER = "dead_letter"  # needs a person: review queue with Salesforce's message


RETRY_CODES = {
    "UNABLE_TO_LOCK_ROW",
    "TIMEOUT",
    "CONNECTION",
    "SERVER_UNAVAILABLE",
    "UNKNOWN_EXCEPTION",
    "INVALID_SESSION_ID",
}
PAUSE_CODES = {"REQUEST_LIMIT_EXCEEDED"}
DEAD_CODES = {
    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    "REQUIRED_FIELD_MISSING",
    "ENTITY_IS_DELETED",
    "MULTIPLE_MATCHES",
    "DUPLICATE_EXTERNAL_ID",
    "INVALID_CROSS_REFERENCE_KEY",
    "FIELD_INTEGRITY_EXCEPTION",
    "STRING_TOO_LONG",
    "INVALID_EMAIL_ADDRESS",
    "CANNOT_UPDATE_CONVERTED_LEAD",
    "OWNER_NOT_IN_SALESFORCE",  # a Task's rep has no active Salesforce user (salesforce/activities.py)
}


def action_for(code: str, *, previous_code: str = "") -> Action:
    if code in PAUSE_CODES:
        return Action.PAUSE
    if code == "DUPLICATE_VALUE":
        return Action.RETRY if previous_code == "DUPLICATE_VALUE" else Action.REREAD_ONCE
    if code in DEAD_CODES:
        return Action.DEAD_LETTER
    if code in RETRY_CODES or code.startswith("HTTP_5"):
        return Action.RETRY
    # Unknown codes (and a lookup whose target is not in Salesforce yet) are retried a few times,
    # then dead-lettered by the attempt limit.
    return Action.RETRY


FIRST_RETRY_SECONDS = (0.1, 0.25)


def backoff(attempt: int, *, jitter: float | None = None) -> timedelta:
    """Salesforce's parameters of the one backoff rule (failures/retry.py): 50–100 % of 3^(n-1) s, at most
    30 minutes.

    The first retry comes within a quarter second (a 5xx or a lock is often gone by then, the record
    is late already, and a retry that fails again costs one call); then 1.5–3 s, 4.5–9 s, … so the
    attempts before a dead letter still span ~15 minutes (9–18). `jitter` (0–1) places the delay in its
    range; rows that failed in one call share it, so they are retried together, in one call again.
    """
    return retry.backoff(
        attempt, base=1.0, factor=3.0, cap=1800.0, spread=0.5, jitter=jitter, first=FIRST_RETRY_SECONDS
    )
