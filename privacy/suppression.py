"""Keeping erased people erased: events that name a tombstoned address are stored suppressed.

Called by `events.services.events_store` inside the storing transaction, for every source (the
provisioning, Stripe and Marketo webhooks, billing reconciliation). A suppressed event is stored with
status `ignored` (CONTRACT §6 has no `suppressed` status, so the flag is `Event.suppressed`), its
payload scrubbed of the person before it is written, and it is never applied: a late or replayed
webhook cannot bring the person back. The sender still gets its usual answer.

Cost on the hot path: a payload without "@" costs one `in` test; otherwise one HMAC per address and
one indexed query per stored batch (a group commit shares it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from events.models import Event
from events.store import NewEvent
from privacy.identity import email_hash, emails_in, placeholder_email
from privacy.models import Tombstone
from privacy.scrub import Person, names_in, scrub_json


def events_suppress(events: Sequence[NewEvent]) -> list[NewEvent]:
    """The events as they are to be stored: those naming an erased person suppressed and scrubbed."""
    mentioned = [emails_in(event.payload) for event in events]
    addresses = set().union(*mentioned)
    if not addresses:
        return list(events)
    hashes = {address: email_hash(address) for address in addresses}
    erased = _tombstones(set(hashes.values()))
    if not erased:
        return list(events)
    result = []
    for event, found in zip(events, mentioned, strict=True):
        tombstones = {address: erased[hashes[address]] for address in found if hashes[address] in erased}
        result.append(_suppressed(event, tombstones) if tombstones else event)
    return result


def _tombstones(hashes: set[str]) -> dict[str, int]:
    """{hash: tombstone id} of the erased among these hashes. Plain SQL: on the webhook path the ORM's
    query building cost several times the round trip itself (measured: ~0.9 ms against ~0.15 ms). On
    PostgreSQL the hashes travel as one array, so the statement text is the same for any number of them and
    the driver prepares it once (DB_PREPARE_THRESHOLD) instead of PostgreSQL parsing and planning each."""
    table = connection.ops.quote_name(Tombstone._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SELECT email_hash, id FROM {table} WHERE email_hash = ANY(%s)", [sorted(hashes)])  # noqa: S608
        else:
            placeholders = ", ".join(["%s"] * len(hashes))
            cursor.execute(f"SELECT email_hash, id FROM {table} WHERE email_hash IN ({placeholders})", list(hashes))  # noqa: S608
        return dict(cursor.fetchall())


def _suppressed(event: NewEvent, tombstones: dict[str, int]) -> NewEvent:
    payload = event.payload
    for address, tombstone_id in tombstones.items():
        emails = frozenset({address})
        # Names given next to the address are theirs: gone too, wherever else the payload repeats them.
        names = frozenset(names_in(payload, emails))
        person = Person(emails, placeholder_email(tombstone_id=tombstone_id, email=address), names)
        payload = scrub_json(payload, person, names=True)  # a text payload is scrubbed as text
    ids = ", ".join(f"#{pk}" for pk in sorted(tombstones.values()))
    return dataclasses.replace(
        event,
        payload=payload,
        # Never applied either way: a rejected event stays rejected, anything else is stored ignored.
        status=Event.Status.REJECTED if event.status == Event.Status.REJECTED else Event.Status.IGNORED,
        suppressed=True,
        payload_scrubbed_at=timezone.now(),
        notes=f"Suppressed: names a person erased on request (tombstone {ids}); stored scrubbed, never applied.",
    )
