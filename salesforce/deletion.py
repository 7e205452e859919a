"""Deleting a record in Salesforce through the outbox (privacy erasure of a converted lead).

Salesforce refuses to update a converted lead (CANNOT_UPDATE_CONVERTED_LEAD), so erasing a person
whose lead was converted deletes that lead instead; their contact is anonymised by an ordinary upsert.
A deletion is an outbox row like any other (type `Deletion`, after every other type in the drain
order): recorded in the erasure's transaction, sent by the drain as one sObject Collections delete per
batch, its outcome on the row. The target row is then marked `erased`: never sent again, and left
out of the drift report. A record that is already gone counts as deleted.
"""

from __future__ import annotations

from salesforce.adapter import RecordResult, SalesforceClient
from salesforce.models import OutboxItem
from salesforce.outbox import outbox_record

DELETION = "Deletion"
#: Salesforce's answers that mean "nothing left to delete".
ALREADY_GONE = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})


def outbox_record_deletion(*, target: OutboxItem, depends_on: OutboxItem | None = None) -> OutboxItem:
    """Record that the target row's Salesforce record must be deleted (after `depends_on` is synced)."""
    return outbox_record(
        object_type=DELETION,
        external_id=f"{target.object_type}:{target.external_id}",
        payload={"object_type": target.object_type, "external_id": target.external_id},
        workspace_key=target.workspace_key,
        depends_on=depends_on,
    )


def deletion_targets(items: list[OutboxItem]) -> dict[int, OutboxItem | None]:
    """The outbox row each deletion points at (None when it was never recorded)."""
    targets = {}
    for item in items:
        targets[item.pk] = OutboxItem.objects.filter(
            object_type=item.payload["object_type"], external_id=item.payload["external_id"]
        ).first()
    return targets


def deletions_send(client: SalesforceClient, items: list[OutboxItem]) -> dict[int, RecordResult]:
    """Delete the targets' Salesforce records; a result per deletion row. Raises SalesforceCallError."""
    targets = deletion_targets(items)
    results: dict[int, RecordResult] = {}
    to_delete = {}
    for item in items:
        target = targets[item.pk]
        if target is None or not target.salesforce_id:
            results[item.pk] = RecordResult(True)  # never reached Salesforce: nothing to delete
        else:
            to_delete[item.pk] = target.salesforce_id
    if to_delete:
        answers = client.delete_collection(list(to_delete.values()))
        for pk, answer in zip(to_delete, answers, strict=True):
            results[pk] = RecordResult(True, answer.salesforce_id) if answer.error_code in ALREADY_GONE else answer
    for item in items:
        target = targets[item.pk]
        if results[item.pk].success and target is not None:
            OutboxItem.objects.filter(pk=target.pk).update(state=OutboxItem.State.ERASED, lease_owner="")
    return results
