"""Lead conversion, exactly once: convertLead for each row, re-reading the lead before any retry, then
stamping what it made (contact, account) with the engine's external ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from salesforce.adapter import (
    ANSWER_LOST,
    CollectionWrite,
    Conversion,
    RecordResult,
    SalesforceCallError,
    SalesforceClient,
)
from salesforce.claiming import MAKE, WAIT, account_roles, candidate_rows, lease_rows, open_states, rows_let_go
from salesforce.models import OutboxItem
from salesforce.outbox import EXTERNAL_ID, keyed, lookup_keys, pk_of
from salesforce.pilot import workspaces_in_pilot
from salesforce.sending import DrainReport, failure_record, results_record, successes_record
from workspaces.models import Workspace

logger = logging.getLogger(__name__)


@dataclass
class _Plan:
    """One lead conversion as it will be sent: onto which account and contact, and what came back."""

    item: OutboxItem
    lead_id: str
    account_id: str | None  # None: convertLead makes the account, which is then stamped
    contact_id: str | None  # the person's contact when Salesforce already has it (merged, not duplicated)
    result: Conversion | None = None


def leads_convert(items: list[OutboxItem], client: SalesforceClient, report: DrainReport) -> None:
    """convertLead for each item, exactly once, then stamp what it made with the engine's external ids.

    A retried conversion may follow a lost answer (a timeout, a dropped connection): its lead is re-read
    first and not converted again. So is one known converted (its stamps failed: the row keeps the contact
    convertLead made), which resumes at the stamps. After an answer to convertLead (a 5xx, a lock) nothing
    was converted, so it converts at once; were the lead converted after all, Salesforce refuses
    (CANNOT_UPDATE_CONVERTED_LEAD) and the lead is re-read then.
    A conversion counts as synced only once its contact (and the account it made) carry their external
    ids; until then their own rows wait for it, so neither is ever upserted into a second record.
    """
    plans = _plans(items, report)
    if not plans:
        return
    retried = [
        plan
        for plan in plans
        if plan.item.salesforce_id or (plan.item.attempts > 0 and plan.item.error_code in ANSWER_LOST)
    ]
    already = _converted_in_salesforce(client, [plan.lead_id for plan in retried], report)
    for plan in plans:
        plan.result = already.get(plan.lead_id)
    to_convert = [plan for plan in plans if plan.result is None]
    if to_convert:
        report.calls += 1
        results = client.convert_leads([(p.lead_id, p.account_id, p.contact_id) for p in to_convert])
        for plan, result in zip(to_convert, results, strict=True):
            plan.result = result
        lost = [p.lead_id for p in to_convert if p.result.error_code == "CANNOT_UPDATE_CONVERTED_LEAD"]
        reread = _converted_in_salesforce(client, lost, report)
        for plan in to_convert:
            plan.result = reread.get(plan.lead_id, plan.result)
    for plan in plans:
        if not plan.result.success:
            failure_record(plan.item, plan.result.error_code, plan.result.error_message, report)
    _stamp_converted(client, [plan for plan in plans if plan.result.success], report)


def _plans(items: list[OutboxItem], report: DrainReport) -> list[_Plan]:
    """How to convert each item; items that must wait (see `account_roles`) are let go for later."""
    roles = account_roles([(item.pk, item.payload["account"]) for item in items])
    rows = _rows("Account", [item.payload["account"] for item in items])
    contacts = _rows("Contact", [item.payload["contact"] for item in items])
    plans = []
    for item in items:
        lead_id = item.depends_on.salesforce_id if item.depends_on else ""
        row = rows.get(item.payload["account"])
        if roles[item.pk] == MAKE and row is not None and row.depends_on_id != item.pk:
            # Taken over from a dead or held maker, only if no other conversion took it meanwhile.
            taken = OutboxItem.objects.filter(pk=row.pk, depends_on_id=row.depends_on_id, salesforce_id="")
            roles[item.pk] = MAKE if taken.update(depends_on=item) else WAIT
        if roles[item.pk] == WAIT:
            rows_let_go([item])
            continue
        if not lead_id:
            failure_record(item, "LEAD_NOT_IN_SALESFORCE", "The lead to convert has no Salesforce id.", report)
            continue
        account_id = None if roles[item.pk] == MAKE else row.salesforce_id
        contact = contacts.get(item.payload["contact"])
        contact_id = contact.salesforce_id if contact is not None and contact.salesforce_id and account_id else None
        plans.append(_Plan(item, lead_id, account_id, contact_id))
    return plans


def _rows(object_type: str, keys: list[str]) -> dict[str, OutboxItem]:
    return {row.external_id: row for row in OutboxItem.objects.filter(object_type=object_type, external_id__in=keys)}


def _converted_in_salesforce(
    client: SalesforceClient, lead_ids: list[str], report: DrainReport
) -> dict[str, Conversion]:
    """Re-read leads whose conversion may already have happened (a retry after a lost response)."""
    quoted = ", ".join(f"'{lead_id}'" for lead_id in lead_ids if lead_id.isalnum())  # Salesforce ids only
    if not quoted:
        return {}
    report.calls += 1
    rows = client.query(
        f"SELECT Id, IsConverted, ConvertedAccountId, ConvertedContactId FROM Lead WHERE Id IN ({quoted})"  # noqa: S608
    )
    return {
        row["Id"]: Conversion(True, row["Id"], row["ConvertedAccountId"], row["ConvertedContactId"])
        for row in rows
        if row.get("IsConverted")
    }


@dataclass
class _Stamp:
    plan: _Plan
    row: OutboxItem
    salesforce_id: str
    error: tuple[str, str] | None = None


def _stamp_converted(client: SalesforceClient, plans: list[_Plan], report: DrainReport) -> None:
    """Write the engine's state, external id included, onto the contact and account convertLead made.

    Collection updates by Id (types mixed, ≤ 200 records a call) stamp them and set their fields, so
    their rows are synced in the same step. A conversion whose stamps all succeeded is synced; one
    with a failed stamp is retried (its lead is re-read, the stamp sent again), never upserted anew.
    The workspaces that waited only for these stamps ride in the same call (`_riders`), right after them.
    """
    stamps: list[_Stamp] = []
    contacts = _rows("Contact", [plan.item.payload["contact"] for plan in plans])
    accounts = _rows("Account", [plan.item.payload["account"] for plan in plans if plan.account_id is None])
    for plan in plans:
        contact = contacts.get(plan.item.payload["contact"])
        if contact is not None:
            stamps.append(_Stamp(plan, contact, plan.result.contact_id))
        if plan.account_id is None:
            account = accounts.get(plan.item.payload["account"])
            if account is not None and account.salesforce_id in ("", plan.result.account_id):
                stamps.append(_Stamp(plan, account, plan.result.account_id))
            else:  # never expected: say so loudly rather than leave a second account unexplained
                logger.error(
                    "convertLead made account %s for %s, which the outbox cannot stamp (row: %s)",
                    plan.result.account_id,
                    plan.item.payload["account"],
                    account,
                )
    stamps.sort(key=lambda stamp: stamp.row.object_type != "Account")  # a contact's account is stamped first
    size = settings.SALESFORCE_BATCH_SIZE
    rode: list[tuple[OutboxItem, RecordResult, set[tuple[str, str]]]] = []
    for start in range(0, len(stamps), size):
        chunk = stamps[start : start + size]
        riders = _riders(chunk, client, report)
        update = [(stamp.row.object_type, {**stamp.row.payload, "Id": stamp.salesforce_id}) for stamp in chunk]
        try:
            report.calls += 1
            if riders:
                results, rider_results = client.write_collections(
                    [
                        CollectionWrite(update),
                        CollectionWrite([("Workspace__c", rider.payload) for rider in riders], "Workspace__c"),
                    ],
                    external_field=EXTERNAL_ID,
                )
            else:
                results, rider_results = client.update_collection(update, external_field=EXTERNAL_ID), []
        except SalesforceCallError as exc:
            for stamp in chunk:
                stamp.error = (exc.code, exc.message)
            rows_let_go(riders)  # not their failure: they go once the stamps are retried
            continue
        for stamp, result in zip(chunk, results, strict=True):
            if not result.success:
                stamp.error = (result.error_code, result.error_message)
        failed = {(stamp.row.object_type, stamp.row.external_id) for stamp in chunk if stamp.error}
        rode += [(rider, result, failed) for rider, result in zip(riders, rider_results, strict=True)]
    stamped, converted = [], []
    for plan in plans:
        mine = [stamp for stamp in stamps if stamp.plan is plan]
        failed = next((stamp.error for stamp in mine if stamp.error), None)
        if failed:  # converted all the same: its retry re-reads the lead (one call), never converts again
            OutboxItem.objects.filter(pk=plan.item.pk).update(salesforce_id=plan.result.contact_id)
            failure_record(plan.item, *failed, report)
            continue
        stamped += [(stamp.row, stamp.salesforce_id) for stamp in mine]
        converted.append((plan.item, plan.result.contact_id))
    # The stamped rows before their conversions, as one by one: a synced conversion lets its dependents go.
    successes_record(stamped, report)
    successes_record(converted, report)
    # A rider refused because a stamp it looks up failed goes again once that stamp is in: no attempt spent.
    waiting = [rider for rider, result, lost in rode if not result.success and _lookup_keys_of(rider.payload) & lost]
    rows_let_go(waiting)
    results_record([(rider, result) for rider, result, _ in rode if rider not in waiting], report)


def _riders(stamps: list[_Stamp], client: SalesforceClient, report: DrainReport) -> list[OutboxItem]:
    """Claim the Workspace__c rows that wait for nothing but these stamps: they are upserted in the same
    call, right after them, instead of one call later (a paying customer's workspace shows in Salesforce
    a round trip sooner; so does a colleague's trial that waited for the account the conversion made).

    Candidates are the converted workspaces and the other workspaces of the contacts and accounts stamped.
    A rider is due, each of its lookups is in Salesforce or among these stamps, it is in the pilot, and no
    earlier copy of it is still in flight.
    """
    stamped = {(stamp.row.object_type, stamp.row.external_id) for stamp in stamps}
    now = timezone.now()
    pks = {
        object_type: [pk_of(key) for t, key in stamped if t == object_type] for object_type in ("Account", "Contact")
    }
    theirs = Workspace.objects.filter(Q(account_id__in=pks["Account"]) | Q(contact_id__in=pks["Contact"]))
    converted = [stamp.plan.item.workspace_key for stamp in stamps]
    rows = list(
        candidate_rows("Workspace__c", now)
        .filter(Q(external_id__in=converted) | Q(external_id__in=theirs.values("workspace_id")))
        .values_list("pk", "version", "external_id", "workspace_key", "payload")[: settings.SALESFORCE_BATCH_SIZE]
    )
    looked_up = {key for *_, payload in rows for key in _lookup_keys_of(payload)}
    unsent = _unsent(looked_up - stamped)
    held = client.held_until("Workspace__c", [external_id for _, _, external_id, _, _ in rows])
    pilot = workspaces_in_pilot({workspace_key for _, _, _, workspace_key, _ in rows})
    ready = {
        pk: version
        for pk, version, external_id, workspace_key, payload in rows
        if not (_lookup_keys_of(payload) & unsent) and external_id not in held and workspace_key in pilot
    }
    if not ready:
        return []
    riders = lease_rows("Workspace__c", ready, stamps[0].plan.item.lease_owner, now)  # its conversion's lane
    report.sent += len(riders)
    report.by_type["Workspace__c"] = report.by_type.get("Workspace__c", 0) + len(riders)
    return riders


def _lookup_keys_of(payload: dict) -> set[tuple[str, str]]:
    """(type, external id) of each record a Workspace__c payload looks up."""
    return lookup_keys("Workspace__c", payload)


def _unsent(keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Of these (type, external id), the records the outbox has yet to send a first time (held ones too:
    a rider pointing at one waits for its own claim, which releases it)."""
    if not keys:
        return set()
    states = [*open_states(), OutboxItem.State.HELD]
    rows = OutboxItem.objects.filter(keyed(keys), salesforce_id="", state__in=states)
    return set(rows.values_list("object_type", "external_id"))
