"""Repairing drift so Salesforce converges: what it lacks is re-created and what it holds wrong is sent
again, in dependency order, without touching converted leads.

A record missing in Salesforce loses its stale Salesforce id, so whatever looks it up waits until it is
re-created (the drainer sends a lookup only once its target is in Salesforce) instead of being refused
against the old one. Records that look it up are queued after it. A converted lead is never re-sent:
Salesforce refuses any change to it (CANNOT_UPDATE_CONVERTED_LEAD), and its account and contact are
upserted on their own, so its conversion is never repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import CharField, Q
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast

from salesforce.drain import drain_request
from salesforce.drift import DriftReport
from salesforce.models import OutboxItem
from salesforce.outbox import EXTERNAL_ID
from salesforce.worker import outbox_retry

#: Which fields of which types look up which type (external-id relationship references).
LOOKED_UP_BY = {
    "Lead": [("Workspace__c", "Lead__r")],
    "Account": [("Workspace__c", "Account__r"), ("Contact", "Account")],
    "Contact": [("Workspace__c", "Contact__r")],
}


@dataclass
class RepairPlan:
    drifted: list[int] = field(default_factory=list)  # outbox rows queued because they drifted
    dependents: dict[int, str] = field(default_factory=dict)  # row queued because it looks up: why
    converted: list[str] = field(default_factory=list)  # converted leads left alone, "Lead lead_1"
    queued: int = 0


def drift_repair(*, report: DriftReport) -> RepairPlan:
    """Queue what the drift report found, so the next report is all clear (see the module docstring)."""
    plan = RepairPlan(drifted=sorted(report.item_ids - report.converted))
    converted = set(OutboxItem.objects.filter(pk__in=report.converted).values_list("object_type", "external_id"))
    plan.converted = [f"{object_type} {key}" for object_type, key in sorted(converted)]
    recreated = report.missing_keys - converted
    plan.dependents = {pk: why for pk, why in _dependents(recreated).items() if pk not in report.item_ids}
    with transaction.atomic():
        if recreated:
            OutboxItem.objects.filter(_keyed(recreated), pk__in=plan.drifted).update(salesforce_id="")
        plan.queued = outbox_retry(item_ids=plan.drifted + sorted(plan.dependents))
    if plan.queued:
        transaction.on_commit(drain_request)
    return plan


def _keyed(keys: set[tuple[str, str]]) -> Q:
    match = Q()
    for object_type, key in keys:
        match |= Q(object_type=object_type, external_id=key)
    return match


def _dependents(recreated: set[tuple[str, str]]) -> dict[int, str]:
    """Synced rows that look up a record being re-created: its new Id must replace the old one there."""
    found: dict[int, str] = {}
    for target_type, relations in LOOKED_UP_BY.items():
        keys = sorted(key for object_type, key in recreated if object_type == target_type)
        for object_type, relationship in relations if keys else []:
            rows = (
                OutboxItem.objects.filter(object_type=object_type, state=OutboxItem.State.SYNCED)
                .annotate(ref=Cast(KeyTextTransform(EXTERNAL_ID, KeyTransform(relationship, "payload")), CharField()))
                .filter(ref__in=keys)
                .values_list("pk", "external_id", "ref")
            )
            for pk, external_id, ref in rows:
                found.setdefault(pk, f"{object_type} {external_id} looks up {target_type} {ref}")
    return found
