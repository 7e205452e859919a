"""Writing the outbox: what Salesforce should hold for a workspace and everything linked to it.

Called by the pipeline inside the transaction that changed the records, so a committed change always
has its outbox row and a rolled-back one never does. Rows are coalesced: an unchanged desired state
writes nothing, a changed one replaces the payload and bumps the version.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from salesforce.models import OutboxItem
from usage.selectors import stages_of
from workspaces.models import Account, Contact, Lead, Workspace

EXTERNAL_ID = "Lifecycle_Engine_ID__c"
STATUS_LABELS = {"trial": "Trial", "paid": "Paid", "churned": "Churned"}


def account_key(account: Account) -> str:
    return key_of("Account", account.pk)


def lead_key(lead: Lead) -> str:
    return key_of("Lead", lead.pk)


def contact_key(contact: Contact) -> str:
    return key_of("Contact", contact.pk)


KEY_PREFIXES = {"Account": "acc", "Lead": "lead", "Contact": "con"}


def key_of(object_type: str, pk: int) -> str:
    """The external id of an engine record by its primary key: no need to load it (processing is hot)."""
    return f"{KEY_PREFIXES[object_type]}_{pk}"


def pk_of(key: str) -> int:
    """The primary key of the engine record behind an external id (`key_of`'s inverse)."""
    return int(key.rpartition("_")[2])


#: Lookups sent as external-ID relationship references, and the object each one points at (a record goes
#: only once those are in Salesforce: salesforce/claiming.py).
RELATIONSHIPS = {"Lead__r": "Lead", "Account__r": "Account", "Contact__r": "Contact", "Account": "Account"}
#: The lookups each type sends (external-id relationship references): the records they point at must be
#: in Salesforce first, or Salesforce refuses the record (INVALID_FIELD: foreign key external id not found).
LOOKUPS = {"Workspace__c": ("Lead__r", "Account__r", "Contact__r"), "Contact": ("Account",)}


def lookup_keys(object_type: str, payload: dict[str, Any]) -> set[tuple[str, str]]:
    """(type, external id) of each record a payload of this type looks up."""
    return {
        (RELATIONSHIPS[relationship], payload[relationship][EXTERNAL_ID])
        for relationship in LOOKUPS.get(object_type, ())
        if isinstance(payload.get(relationship), dict)
    }


def keyed(keys: set[tuple[str, str]]) -> Q:
    """Outbox rows by (type, external id): each an equality pair on the unique index."""
    match = Q()
    for object_type, key in keys:
        match |= Q(object_type=object_type, external_id=key)
    return match


def lookup(relationship: str, key: str | None) -> dict[str, Any]:
    """A lookup as an external-ID relationship reference (`Lead__r: {ext id}`), so no Salesforce id is
    needed; an empty lookup is cleared through its field (`Lead__c: null`), as Salesforce requires."""
    if key:
        return {relationship: {EXTERNAL_ID: key}}
    return {relationship.removesuffix("__r") + "__c": None}


def _date(value) -> str | None:
    return value.date().isoformat() if value else None


def lead_payload(lead: Lead) -> dict[str, Any]:
    local, _, domain = lead.email.partition("@")
    return {
        EXTERNAL_ID: lead_key(lead),
        "Email": lead.email,
        "FirstName": lead.first_name or None,
        "LastName": lead.last_name or local,  # required in Salesforce
        "Company": lead.company or domain,  # required in Salesforce
        "LeadSource": lead.lead_source,
    }


def account_payload(account: Account) -> dict[str, Any]:
    return {EXTERNAL_ID: account_key(account), "Name": account.name, "Website": account.domain or None}


def contact_payload(contact: Contact) -> dict[str, Any]:
    return {
        EXTERNAL_ID: contact_key(contact),
        "Email": contact.email,
        "FirstName": contact.first_name or None,
        "LastName": contact.last_name or contact.email.partition("@")[0],
        "Account": {EXTERNAL_ID: key_of("Account", contact.account_id)},
    }


def workspace_payload(workspace: Workspace, stage: str | None = None) -> dict[str, Any]:
    """Its Workspace__c record; `stage`: its lifecycle stage key (usage's profile), None before one."""
    return {
        EXTERNAL_ID: workspace.workspace_id,
        "Workspace_ID__c": workspace.workspace_id,
        "Name": (workspace.name or workspace.workspace_id)[:80],
        "Self_Serve_Status__c": STATUS_LABELS[workspace.status],
        "Trial_Expiration_Date__c": _date(workspace.trial_expires_at),
        "Converted_Date__c": _date(workspace.converted_at),
        "Churn_Date__c": _date(workspace.churned_at),
        "Churn_Reason__c": workspace.churn_reason or None,
        "Plan__c": workspace.plan or None,
        "MRR__c": str(workspace.mrr.quantize(Decimal("0.01"))) if workspace.mrr is not None else None,
        "Lifecycle_Stage__c": stage,
        **lookup("Lead__r", key_of("Lead", workspace.lead_id) if workspace.lead_id else None),
        **lookup("Account__r", key_of("Account", workspace.account_id) if workspace.account_id else None),
        **lookup("Contact__r", key_of("Contact", workspace.contact_id) if workspace.contact_id else None),
    }


def conversion_payload(lead: Lead) -> dict[str, Any]:
    return {
        "lead": lead_key(lead),
        "account": key_of("Account", lead.converted_account_id),
        "contact": key_of("Contact", lead.converted_contact_id),
    }


_UNKNOWN: Any = object()


class NewRows:
    """A workspace's new outbox rows, inserted together: one savepoint and one INSERT instead of a
    savepoint and an INSERT each. Flushed before a row that depends on one of them, and at the end."""

    def __init__(self) -> None:
        self.rows: list[OutboxItem] = []

    def add(self, item: OutboxItem) -> OutboxItem:
        self.rows.append(item)
        return item

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        try:
            with transaction.atomic():
                OutboxItem.objects.bulk_create(rows)
        except IntegrityError:  # another worker recorded one of them first: one by one, updating theirs
            for row in rows:
                row.pk = None
                saved = outbox_record(
                    object_type=row.object_type,
                    external_id=row.external_id,
                    payload=row.payload,
                    workspace_key=row.workspace_key,
                    depends_on=row.depends_on,
                )
                row.pk, row.version, row.state = saved.pk, saved.version, saved.state


def outbox_record(
    *,
    object_type: str,
    external_id: str,
    payload: dict[str, Any],
    workspace_key: str = "",
    depends_on: OutboxItem | None = None,
    existing: OutboxItem | None = _UNKNOWN,
    new_rows: NewRows | None = None,
) -> OutboxItem:
    """Make the row hold this desired state; a no-op when it already does. `existing`: the row (or None
    for none) when the caller has read it already; `new_rows`: where a new row waits to be inserted."""
    if new_rows is not None and depends_on is not None and depends_on.pk is None:
        new_rows.flush()  # the row it depends on must have its id first
    item = existing
    if item is _UNKNOWN:
        item = OutboxItem.objects.filter(object_type=object_type, external_id=external_id).first()
    if item is None:
        fields = {
            "object_type": object_type,
            "external_id": external_id,
            "payload": payload,
            "workspace_key": workspace_key,
            "depends_on": depends_on,
        }
        if new_rows is not None:
            return new_rows.add(OutboxItem(**fields))
        try:
            with transaction.atomic():
                return OutboxItem.objects.create(**fields)
        except IntegrityError:  # another worker recorded it first: fall through and update
            item = OutboxItem.objects.get(object_type=object_type, external_id=external_id)
    if item.payload == payload and (depends_on is None or item.depends_on_id == depends_on.pk):
        return item
    item.payload = payload
    item.version += 1
    item.depends_on = depends_on or item.depends_on
    if item.state != OutboxItem.State.DEAD:
        item.state, item.next_attempt_at, item.error_code, item.error_message = OutboxItem.State.PENDING, None, "", ""
    item.save(
        update_fields=[
            "payload",
            "version",
            "depends_on",
            "state",
            "next_attempt_at",
            "error_code",
            "error_message",
            "updated_at",
        ]
    )
    return item


def outbox_record_workspaces(*, workspaces: list[Workspace]) -> None:
    """outbox_record_workspace for several workspaces, in order: their outbox rows read in one query and
    their new rows inserted together (a task's workspaces and the colleagues they changed)."""
    if settings.SALESFORCE_SYNC == "off" or not workspaces:
        return
    rows = _rows_of([key for workspace in workspaces for key in _row_keys(workspace)])
    stages = stages_of([workspace.workspace_id for workspace in workspaces])
    new_rows = NewRows()
    for workspace in workspaces:
        outbox_record_workspace(workspace=workspace, rows=rows, new_rows=new_rows, stages=stages)
    new_rows.flush()


def _row_keys(workspace: Workspace) -> list[tuple[str, str]]:
    """The outbox rows (type, external id) that hold a workspace and its lead, account and contact."""
    lead, account, contact = workspace.lead, workspace.account, workspace.contact
    return (
        [("Workspace__c", workspace.workspace_id)]
        + ([("Lead", lead_key(lead)), ("LeadConversion", lead_key(lead))] if lead is not None else [])
        + ([("Account", account_key(account))] if account is not None else [])
        + ([("Contact", contact_key(contact))] if contact is not None else [])
    )


def outbox_record_workspace(
    *,
    workspace: Workspace,
    rows: dict[tuple[str, str], OutboxItem] | None = None,
    new_rows: NewRows | None = None,
    stages: dict[str, str] | None = None,
) -> None:
    """Record the desired Salesforce state of a workspace and of its lead, account and contact.

    `rows`: its outbox rows when the caller has read them (outbox_record_workspaces); rows this call
    creates or changes are put back in it, so a colleague recorded next sees them. `new_rows`: where its
    new rows wait, inserted by the caller (else at the end of this call). `stages`: lifecycle stage keys by
    workspace when the caller has read them.
    """
    if settings.SALESFORCE_SYNC == "off":
        return
    key = workspace.workspace_id
    lead, account, contact = workspace.lead, workspace.account, workspace.contact
    if rows is None:
        rows = _rows_of(_row_keys(workspace))
    flush, new_rows = new_rows is None, new_rows if new_rows is not None else NewRows()

    def record(object_type: str, external_id: str, payload: dict[str, Any], depends_on: OutboxItem | None = None):
        item = outbox_record(
            object_type=object_type,
            external_id=external_id,
            payload=payload,
            workspace_key=key,
            depends_on=depends_on,
            existing=rows.get((object_type, external_id)),
            new_rows=new_rows,
        )
        rows[(object_type, external_id)] = item
        return item

    conversion = None
    if lead is not None:
        lead_item = rows.get(("Lead", lead_key(lead)))
        if lead.converted_at is None or lead_item is None:  # converted before it was ever sent: send it first
            lead_item = record("Lead", lead_key(lead), lead_payload(lead))
        if lead.converted_at is not None:
            conversion = record("LeadConversion", lead_key(lead), conversion_payload(lead), depends_on=lead_item)
    if account is not None:
        maker = _account_made_by(account, lead, conversion) if ("Account", account_key(account)) not in rows else None
        record("Account", account_key(account), account_payload(account), depends_on=maker)
    if contact is not None:
        from_conversion = conversion is not None and lead.converted_contact_id == contact.pk
        record(
            "Contact",
            contact_key(contact),
            contact_payload(contact),
            depends_on=conversion if from_conversion else None,
        )
    stage = (stages if stages is not None else stages_of([key])).get(key)
    record("Workspace__c", key, workspace_payload(workspace, stage))
    if flush:
        new_rows.flush()


def _rows_of(keys: list[tuple[str, str]]) -> dict[tuple[str, str], OutboxItem]:
    """The outbox rows of these (type, external id), read in one query: one `external_id IN` per type,
    so colleagues sharing an account or a lead ask for it once."""
    by_type: dict[str, set[str]] = {}
    for object_type, external_id in keys:
        by_type.setdefault(object_type, set()).add(external_id)
    match = Q()
    for object_type, external_ids in by_type.items():
        match |= Q(object_type=object_type, external_id__in=sorted(external_ids))
    return {(row.object_type, row.external_id): row for row in OutboxItem.objects.filter(match)}


def _account_made_by(account: Account, lead: Lead | None, conversion: OutboxItem | None) -> OutboxItem | None:
    """The conversion whose convertLead makes this account in Salesforce: asked only when the account is
    first recorded (new to Salesforce too).

    A maker is never replaced by a colleague's conversion later, because the first one's convertLead may
    already have made the account in Salesforce with its answer lost (two makers, two accounts). An
    account recorded before, without a maker, is upserted on its own and conversions go onto it.
    """
    if conversion is None or lead is None or lead.converted_account_id != account.pk:
        return None
    return conversion
