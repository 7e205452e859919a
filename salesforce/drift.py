"""Drift between the engine and Salesforce.

Every record the engine means Salesforce to have (each outbox row of a Salesforce object, but erased
ones) is counted by where it stands: synced rows are read back by external id and compared field by
field; the others are counted as held, pending, failed or dry run, never silently skipped, so a report
that checked fewer records than before says why. Repairing what it found is `salesforce.repair`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Count, Q

from salesforce.adapter import SalesforceClient
from salesforce.models import OutboxItem
from salesforce.outbox import EXTERNAL_ID, RELATIONSHIPS

QUERY_BATCH = 200
SYNCED_TYPES = ("Account", "Lead", "Contact", "Workspace__c")
EXAMPLES = 10  # kept per field and per state: the command shows the first few
S = OutboxItem.State
#: Where a record not (yet) in sync stands, by outbox state; synced rows are checked instead.
NOT_SENT = {
    "held": (S.HELD,),
    "pending": (S.PENDING, S.RETRY),
    "failed": (S.DEAD,),
    "dry run": (S.DRY_RUN,),
}
NOT_SENT_LABELS = {
    "held": "held (outside the pilot)",
    "pending": "pending (waiting to be sent, or retried)",
    "failed": "failed (dead letters)",
    "dry run": "recorded in dry run, never sent",
}


@dataclass(frozen=True)
class FieldDiff:
    external_id: str
    engine: str
    salesforce: str


@dataclass
class NotSent:
    count: int = 0
    examples: list[str] = field(default_factory=list)  # "Workspace__c ws_3" (with its error code when failed)


@dataclass
class DriftReport:
    expected: int = 0  # records the engine means Salesforce to have
    checked: int = 0  # the synced ones, read back
    not_sent: dict[str, NotSent] = field(default_factory=dict)  # NOT_SENT group -> how many, e.g.
    missing: dict[str, list[str]] = field(default_factory=dict)  # type -> external ids
    mismatches: dict[str, dict[str, list[FieldDiff]]] = field(default_factory=dict)  # type -> field -> diffs
    diff_counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (type, field) -> how many differ
    item_ids: set[int] = field(default_factory=set)  # outbox rows that drifted
    converted: set[int] = field(default_factory=set)  # ... of them converted leads: Salesforce refuses changes
    missing_keys: set[tuple[str, str]] = field(default_factory=set)  # (type, external id) missing in Salesforce

    @property
    def drifted(self) -> int:
        return len(self.item_ids)

    @property
    def in_sync(self) -> int:
        return self.checked - self.drifted

    @property
    def unsent(self) -> int:
        return sum(group.count for group in self.not_sent.values())

    @property
    def all_clear(self) -> bool:
        """Salesforce holds every record the engine means it to have, as the engine last sent it."""
        return self.in_sync == self.expected

    def add_missing(self, item: OutboxItem) -> None:
        self.missing.setdefault(item.object_type, []).append(item.external_id)
        self.missing_keys.add((item.object_type, item.external_id))
        self.item_ids.add(item.pk)

    def add_mismatch(self, item: OutboxItem, name: str, engine: Any, salesforce: Any) -> None:
        key = (item.object_type, name)
        self.diff_counts[key] = self.diff_counts.get(key, 0) + 1
        diffs = self.mismatches.setdefault(item.object_type, {}).setdefault(name, [])
        if len(diffs) < EXAMPLES:
            diffs.append(FieldDiff(item.external_id, _shown(engine), _shown(salesforce)))
        self.item_ids.add(item.pk)


def _shown(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


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


def _expected_rows():
    return OutboxItem.objects.filter(object_type__in=SYNCED_TYPES).exclude(state=S.ERASED)


def _batches(object_type: str) -> Iterator[list[OutboxItem]]:
    items = OutboxItem.objects.filter(object_type=object_type, state=S.SYNCED).order_by("pk")
    batch: list[OutboxItem] = []
    for item in items.iterator(chunk_size=1000):
        batch.append(item)
        if len(batch) == QUERY_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def salesforce_drift(*, client: SalesforceClient, progress: Callable[[int, int], None] | None = None) -> DriftReport:
    """Count every record the engine means Salesforce to have, and compare the synced ones with it."""
    report = DriftReport()
    by_state = dict(_expected_rows().values("state").annotate(n=Count("pk")).values_list("state", "n"))
    report.expected = sum(by_state.values())
    total = by_state.get(S.SYNCED, 0)
    for group, states in NOT_SENT.items():
        report.not_sent[group] = NotSent(sum(by_state.get(state, 0) for state in states), _examples(states))
    if progress:
        progress(0, total)
    for object_type in SYNCED_TYPES:
        for batch in _batches(object_type):
            _compare_batch(client, object_type, batch, report)
            if progress:
                progress(report.checked, total)
    return report


def _examples(states: tuple[str, ...]) -> list[str]:
    rows = _expected_rows().filter(state__in=states).order_by("pk")[:EXAMPLES]
    return [f"{row.object_type} {row.external_id}" + (f" ({row.error_code})" if row.error_code else "") for row in rows]


def _target_ids(batch: list[OutboxItem]) -> dict[tuple[str, str], str]:
    """The Salesforce id the engine knows for each record this batch looks up, by (type, external id)."""
    match = Q()
    for item in batch:
        for name, value in item.payload.items():
            if name in RELATIONSHIPS and isinstance(value, dict):
                match |= Q(object_type=RELATIONSHIPS[name], external_id=value[EXTERNAL_ID])
    if not match:
        return {}
    rows = OutboxItem.objects.filter(match).values_list("object_type", "external_id", "salesforce_id")
    return {(object_type, key): salesforce_id for object_type, key, salesforce_id in rows}


def _compare_batch(client: SalesforceClient, object_type: str, batch: list[OutboxItem], report: DriftReport) -> None:
    names = sorted({name for item in batch for name in item.payload if name != EXTERNAL_ID})
    columns = sorted({_lookup_field(n) if n in RELATIONSHIPS else n for n in names})
    if object_type == "Lead":
        columns.append("IsConverted")
    quoted = ", ".join("'" + item.external_id.replace("'", "\\'") + "'" for item in batch)
    soql = f"SELECT Id, {EXTERNAL_ID}, {', '.join(columns)} FROM {object_type} WHERE {EXTERNAL_ID} IN ({quoted})"  # noqa: S608
    found = {row[EXTERNAL_ID]: row for row in client.query(soql)}
    targets = _target_ids(batch)
    for item in batch:
        report.checked += 1
        row = found.get(item.external_id)
        if row is None:
            report.add_missing(item)
        else:
            _compare_fields(item, row, targets, report)
        if item.pk in report.item_ids and _converted(item, row):
            report.converted.add(item.pk)


def _converted(item: OutboxItem, row: dict | None) -> bool:
    """A lead Salesforce converted (or, once deleted there, one the engine converted)."""
    if item.object_type != "Lead":
        return False
    if row is not None:
        return bool(row.get("IsConverted"))
    conversion = OutboxItem.objects.filter(object_type="LeadConversion", external_id=item.external_id)
    return conversion.filter(Q(state=S.SYNCED) | ~Q(salesforce_id="")).exists()


def _compare_fields(item: OutboxItem, row: dict, targets: dict[tuple[str, str], str], report: DriftReport) -> None:
    for name, expected in item.payload.items():
        if name == EXTERNAL_ID:
            continue
        if name in RELATIONSHIPS:
            key = expected[EXTERNAL_ID] if isinstance(expected, dict) else ""
            target = targets.get((RELATIONSHIPS[name], key), "") if key else ""
            actual = row.get(_lookup_field(name))
            if not _same(target, actual):
                report.add_mismatch(item, _lookup_field(name), f"{key} ({target or 'no Salesforce id'})", actual)
        elif not _same(expected, row.get(name)):
            report.add_mismatch(item, name, expected, row.get(name))
