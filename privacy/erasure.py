"""Erasing a person: anonymise their records, scrub every mention, tell Salesforce, keep a tombstone.

Order matters:
1. the tombstone is committed first, so from then on any event naming them is stored suppressed
   (`privacy.suppression`) while the rest runs;
2. in one transaction their lead, contact and owned workspaces get the placeholder address
   (`erased-<n>@domain`) and lose their names, messages not yet sent to them are skipped and firings
   deferred for them suppressed, and every row mentioning the address is scrubbed (event payloads and
   notes, review items, alerts, outbox rows, audit entries, usage rows, trigger firings and the messages
   they planned, unsubscribes) — the rows `privacy.records.person_holdings` finds, the same finder the
   export uses;
3. their workspaces are re-folded from the scrubbed events, so the stored state is exactly what the
   events now say and a later re-fold or replay changes nothing;
4. Salesforce is told through the outbox: unconverted leads and contacts are upserted anonymised, a
   converted lead (which Salesforce will not update) is deleted;
5. on SQLite the write-ahead log is checkpointed and truncated: until then the old pages, address and
   all, stay in the `-wal` file beside the database (`sqlite_wal_checkpoint`; docs/privacy.md says what
   PostgreSQL needs instead).

Anonymised rows are updated with `QuerySet.update()`, which the audit trail does not record: a
history entry would copy the address it is removing. The request itself (`DataRequest`) is the record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F, Model, QuerySet
from django.utils import timezone

from events.models import Event
from events.services import async_task
from messaging.models import Dispatch
from privacy.identity import email_hash, normalise_email, placeholder_email
from privacy.models import Tombstone
from privacy.records import TEXT_FIELDS, Subject, mentioning, person_holdings
from privacy.scrub import Person, names_in, scrub_json, scrub_text
from processing.pipeline import workspace_process
from salesforce.deletion import outbox_record_deletion
from salesforce.models import OutboxItem
from salesforce.outbox import contact_key, contact_payload, lead_key, lead_payload, outbox_record
from triggers.models import Firing
from usage.models import UsageDailyUser
from workspaces.actors import acting_as_system
from workspaces.models import Contact, Lead, Workspace

logger = logging.getLogger(__name__)

JSON_FIELDS = {
    "payload", "context", "review_reasons", "changes", "serialized_data", "additional_data", "explanation", "data",
}  # fmt: skip
#: Why a message to the erased person, or a firing deferred for them, was stopped.
NOT_SENT = "Not sent: the recipient was erased (a data request)."


class ErasureInvalid(ValueError):
    """The request cannot be carried out as given; the message names the field."""


@dataclass
class ErasureReport:
    tombstone_id: int
    changed: dict[str, int] = field(default_factory=dict)
    refolded: int = 0
    salesforce: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, count: int) -> None:
        if count:
            self.changed[kind] = self.changed.get(kind, 0) + count

    def summary(self) -> dict[str, Any]:
        return {"tombstone": self.tombstone_id, "changed": self.changed, "refolded": self.refolded,
                "salesforce": self.salesforce}  # fmt: skip


def clean_email(value: str) -> str:
    email = normalise_email(value)
    try:
        validate_email(email)
    except ValidationError as exc:
        raise ErasureInvalid(f"email: {value!r} is not an email address.") from exc
    return email


def person_erase(*, email: str) -> ErasureReport:
    """Erase everything that identifies the person; safe to run again (the second run changes nothing)."""
    email = clean_email(email)
    tombstone, _ = Tombstone.objects.get_or_create(email_hash=email_hash(email))
    report = ErasureReport(tombstone_id=tombstone.pk)
    subject = Subject.find(email)
    person = _person(subject, placeholder_email(tombstone_id=tombstone.pk, email=email))
    with transaction.atomic(), acting_as_system():
        _anonymise_records(subject, person, report)
        _stop_messages(subject, report)
        _tell_salesforce(subject, report)
        _scrub_mentions(subject, person, report)
    for key in subject.workspace_keys:
        workspace_process(workspace_key=key, force=True)
        report.refolded += 1
    with transaction.atomic(), acting_as_system():
        _scrub_mentions(subject, person, report)  # whatever the re-fold wrote (review reasons, alerts)
    sqlite_wal_checkpoint()
    logger.info("erasure done: tombstone #%s, %s", tombstone.pk, report.changed)
    return report


def sqlite_wal_checkpoint() -> bool | None:
    """SQLite: write the WAL back into the database file and truncate it to zero bytes.

    In WAL mode an UPDATE leaves the page it replaced in the `-wal` file until a checkpoint, so an erased
    address would stay readable on disk (and in a copy of the file) for a while. TRUNCATE waits, up to
    the busy timeout, for readers in other processes to finish with the log. True when done; False when
    a reader still held it (the next automatic checkpoint finishes the job); None on other databases, or
    inside a transaction (the caller checkpoints after its commit).
    """
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return None
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        busy, _, _ = cursor.fetchone()
    if busy:
        logger.warning("erasure: the SQLite WAL checkpoint was blocked by a reader; old pages stay until the next one")
    return not busy


def _person(subject: Subject, replacement: str) -> Person:
    emails = frozenset({subject.email})
    names: set[str] = set()
    for model, pks in ((Lead, subject.lead_pks), (Contact, subject.contact_pks), (Workspace, subject.workspace_pks)):
        for first, last in model.objects.filter(pk__in=pks).values_list("first_name", "last_name"):
            names |= {first.strip(), last.strip()}
    for payload in Event.objects.filter(mentioning(("payload",), subject.email)).values_list("payload", flat=True):
        names |= names_in(payload, emails)
    return Person(emails, replacement, frozenset(name for name in names if name))


def _anonymise_records(subject: Subject, person: Person, report: ErasureReport) -> None:
    anonymous = {"email": person.replacement, "first_name": "", "last_name": ""}
    report.add("leads", Lead.objects.filter(pk__in=subject.lead_pks).update(**anonymous, updated_at=timezone.now()))
    report.add(
        "contacts", Contact.objects.filter(pk__in=subject.contact_pks).update(**anonymous, updated_at=timezone.now())
    )
    report.add(
        "workspaces", Workspace.objects.filter(email=subject.email).update(**anonymous, updated_at=timezone.now())
    )
    report.add("usage", UsageDailyUser.objects.filter(user_email=subject.email).update(user_email=person.replacement))


def _stop_messages(subject: Subject, report: ErasureReport) -> None:
    """Nothing more goes to the person: their unsent messages are skipped and their deferred firings (quiet
    hours) are suppressed, each saying why. New firings find only the placeholder (`privacy.audience`)."""
    unsent = Dispatch.objects.filter(
        recipient__iexact=subject.email, status__in=(Dispatch.Status.PENDING, Dispatch.Status.FAILED)
    )
    report.add("messages stopped", unsent.update(status=Dispatch.Status.SKIPPED, next_attempt_at=None,
                                                 last_error=NOT_SENT, updated_at=timezone.now()))  # fmt: skip
    deferred = Firing.objects.filter(recipient__iexact=f"email:{subject.email}", status=Firing.Status.DEFERRED)
    for firing in deferred:
        Firing.objects.filter(pk=firing.pk, status=Firing.Status.DEFERRED).update(
            status=Firing.Status.SUPPRESSED, reason=Firing.Reason.NO_RECIPIENT,
            explanation={**firing.explanation, "why_not": NOT_SENT},
            actions=[{**action, "status": Firing.Status.SUPPRESSED} for action in firing.actions],
        )  # fmt: skip
        report.add("firings stopped", 1)


def _scrub_mentions(subject: Subject, person: Person, report: ErasureReport) -> None:
    """Scrub every row the export would list (person_holdings), names too where the row is about them."""
    now = timezone.now()
    holdings = person_holdings(email=subject.email, subject=subject)
    # Every section's rows are fixed before the first is changed: scrubbing one changes what finds the next.
    found = {model: list(rows.values_list("pk", flat=True)) for model, rows in holdings.with_text().items()}
    for model, pks in found.items():
        fields, about_pks = TEXT_FIELDS[model], holdings.about[model]
        rows: QuerySet = model.objects.filter(pk__in=pks)
        changed = 0
        for row in rows.only("pk", *fields, *EXTRA_FIELDS.get(model, ())):
            values = _scrubbed_values(row, fields, person, names=row.pk in about_pks)
            if not values:
                continue
            if model is Event and "payload" in values:
                values["payload_scrubbed_at"] = now
            if model is OutboxItem and "payload" in values and _resendable(row):
                values.update(_resend())
            model.objects.filter(pk=row.pk).update(**values)
            changed += 1
        report.add(model._meta.label_lower, changed)


#: Read along with the text fields to decide what a scrubbed row needs.
EXTRA_FIELDS = {OutboxItem: ("object_type", "external_id", "state")}


def _resendable(row: OutboxItem) -> bool:
    """A scrubbed outbox row is sent again, so Salesforce gets the scrubbed values too; except a converted
    lead's (Salesforce refuses to update it: it is deleted instead) and rows that are not records."""
    if row.object_type not in ("Account", "Contact", "Workspace__c", "Lead"):
        return False
    if row.state in (OutboxItem.State.DEAD, OutboxItem.State.ERASED):
        return False
    if row.object_type == "Lead":
        return not OutboxItem.objects.filter(object_type="LeadConversion", external_id=row.external_id).exists()
    return True


def _resend() -> dict[str, Any]:
    return {"version": F("version") + 1, "state": OutboxItem.State.PENDING, "next_attempt_at": None,
            "error_code": "", "error_message": ""}  # fmt: skip


def _scrubbed_values(row: Model, fields: tuple[str, ...], person: Person, *, names: bool) -> dict[str, Any]:
    values = {}
    for name in fields:
        old = getattr(row, name)
        if old in (None, "", [], {}):
            continue
        if name in JSON_FIELDS and not isinstance(old, str):
            new = scrub_json(old, person, names=names)
        else:
            new = scrub_text(old, person, names=names)
        if new != old:
            values[name] = new
    return values


def _tell_salesforce(subject: Subject, report: ErasureReport) -> None:
    """Anonymise what Salesforce can update; delete the converted lead it cannot."""
    if settings.SALESFORCE_SYNC == "off":
        return
    queued = {"anonymise": 0, "delete": 0}
    for lead in Lead.objects.filter(pk__in=subject.lead_pks):
        row = OutboxItem.objects.filter(object_type="Lead", external_id=lead_key(lead)).first()
        if row is None:
            continue
        if lead.converted_at is None:
            outbox_record(object_type="Lead", external_id=row.external_id, payload=lead_payload(lead),
                          workspace_key=row.workspace_key)  # fmt: skip
            queued["anonymise"] += 1
        else:
            conversion = OutboxItem.objects.filter(object_type="LeadConversion", external_id=row.external_id).first()
            outbox_record_deletion(target=row, depends_on=conversion)
            queued["delete"] += 1
    for contact in Contact.objects.filter(pk__in=subject.contact_pks).select_related("account"):
        row = OutboxItem.objects.filter(object_type="Contact", external_id=contact_key(contact)).first()
        if row is not None:
            outbox_record(object_type="Contact", external_id=row.external_id, payload=contact_payload(contact),
                          workspace_key=row.workspace_key)  # fmt: skip
            queued["anonymise"] += 1
    report.salesforce = queued
    if any(queued.values()):
        transaction.on_commit(
            lambda: async_task("salesforce.tasks.drain_outbox", q_options={"group": "sync"}), robust=True
        )
