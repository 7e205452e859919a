"""Drift between the engine and Salesforce: read back every synced object by external id and compare."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sync.models import OutboxItem
from sync.outbox import EXTERNAL_ID
from sync.salesforce import SalesforceClient

QUERY_BATCH = 200
SYNCED_TYPES = ("Account", "Lead", "Contact", "Workspace__c")


@dataclass
class DriftReport:
    checked: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)
    mismatches: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # type -> field -> external ids
    item_ids: set[int] = field(default_factory=set)
    dependents: set[int] = field(default_factory=set)  # in sync, but pointing at a record that is not

    @property
    def to_resend(self) -> list[int]:
        return sorted(self.item_ids | self.dependents)

    def add_mismatch(self, object_type: str, name: str, external_id: str, item_id: int) -> None:
        self.mismatches.setdefault(object_type, {}).setdefault(name, []).append(external_id)
        self.item_ids.add(item_id)


def _lookup_field(name: str) -> str:
    """Relationship reference → the lookup field Salesforce returns (Lead__r → Lead__c, Account → AccountId)."""
    return f"{name[:-3]}__c" if name.endswith("__r") else f"{name}Id"


def _same(expected: Any, actual: Any) -> bool:
    if expected in (None, "") and actual in (None, ""):
        return True
    try:
        return Decimal(str(expected)) == Decimal(str(actual))
    except (InvalidOperation, ValueError):
        return str(expected) == str(actual)


def _batches(object_type: str) -> Iterator[list[OutboxItem]]:
    items = OutboxItem.objects.filter(object_type=object_type, state=OutboxItem.State.SYNCED).order_by("pk")
    batch: list[OutboxItem] = []
    for item in items.iterator(chunk_size=1000):
        batch.append(item)
        if len(batch) == QUERY_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def salesforce_drift(*, client: SalesforceClient, progress: Callable[[int, int], None] | None = None) -> DriftReport:
    report = DriftReport()
    total = OutboxItem.objects.filter(object_type__in=SYNCED_TYPES, state=OutboxItem.State.SYNCED).count()
    ids = dict(OutboxItem.objects.exclude(salesforce_id="").values_list("external_id", "salesforce_id"))
    for object_type in SYNCED_TYPES:
        for batch in _batches(object_type):
            _compare_batch(client, object_type, batch, ids, report)
            if progress:
                progress(report.checked, total)
    _include_dependents(report)
    return report


def _include_dependents(report: DriftReport) -> None:
    """A record re-created in Salesforce gets a new Id: whatever points at it is re-sent too."""
    missing = OutboxItem.objects.filter(
        pk__in=report.item_ids,
        external_id__in=[external_id for external_ids in report.missing.values() for external_id in external_ids],
    )
    keys = {key for key in missing.values_list("workspace_key", flat=True) if key}
    report.dependents.update(
        OutboxItem.objects.filter(workspace_key__in=keys, state=OutboxItem.State.SYNCED).values_list("pk", flat=True)
    )


def _compare_batch(
    client: SalesforceClient, object_type: str, batch: list[OutboxItem], ids: dict[str, str], report: DriftReport
) -> None:
    names = sorted({name for item in batch for name in item.payload if name != EXTERNAL_ID})
    columns = sorted(
        {_lookup_field(n) if isinstance(batch[0].payload.get(n), dict) or n.endswith("__r") else n for n in names}
    )
    quoted = ", ".join("'" + item.external_id.replace("'", "\\'") + "'" for item in batch)
    soql = f"SELECT Id, {EXTERNAL_ID}, {', '.join(columns)} FROM {object_type} WHERE {EXTERNAL_ID} IN ({quoted})"  # noqa: S608
    found = {row[EXTERNAL_ID]: row for row in client.query(soql)}
    for item in batch:
        report.checked += 1
        row = found.get(item.external_id)
        if row is None:
            report.missing.setdefault(object_type, []).append(item.external_id)
            report.item_ids.add(item.pk)
            continue
        for name, expected in item.payload.items():
            if name == EXTERNAL_ID:
                continue
            if isinstance(expected, dict):
                target = ids.get((expected or {}).get(EXTERNAL_ID, ""), "") if expected else ""
                if not _same(target, row.get(_lookup_field(name))):
                    report.add_mismatch(object_type, _lookup_field(name), item.external_id, item.pk)
            elif not _same(expected, row.get(name)):
                report.add_mismatch(object_type, name, item.external_id, item.pk)
