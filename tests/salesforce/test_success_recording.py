"""The drainer records a call's successes in a few statements, however many records the call carried,
and never waits for a row lock while holding another row (processing holds them in long transactions)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from salesforce.adapter import RecordResult, shared_client
from salesforce.models import OutboxItem
from salesforce.outbox import outbox_record
from salesforce.sending import DrainReport
from salesforce.worker import outbox_drain_step
from tests.events.helpers import T0, lifecycle_event
from tests.factories import WorkspaceFactory
from tests.salesforce.test_sync_live import converted, drain_until_quiet, process, trial
from workspaces.models import Account, Contact, Lead, Workspace


class Accepting:
    """A Salesforce client whose collection upserts succeed; `during` runs while a call is in flight."""

    def __init__(self, during: Callable[[], None] = lambda: None) -> None:
        self.during = during

    def upsert_collection(self, object_type: str, external_field: str, records: list[dict]) -> list[RecordResult]:
        self.during()
        return [RecordResult(True, sf_id(record["Name"])) for record in records]

    def held_until(self, object_type: str, external_ids: list[str]) -> dict:
        return {}  # never hedged


def sf_id(workspace_id: str) -> str:
    return f"a0X{workspace_id}".ljust(18, "0")


@pytest.fixture
def live(settings) -> None:
    settings.SALESFORCE_SYNC = "live"
    settings.SALESFORCE_PILOT_PERCENT = 100
    settings.SALESFORCE_PILOT_REPS = []


def workspace_rows(count: int) -> list[OutboxItem]:
    """`count` workspaces, each with its pending Workspace__c outbox row (no lookups to wait for)."""
    return [
        outbox_record(
            object_type="Workspace__c",
            external_id=workspace.workspace_id,
            payload={"Name": workspace.workspace_id},
            workspace_key=workspace.workspace_id,
        )
        for workspace in WorkspaceFactory.create_batch(count)
    ]


def drain_workspaces(client: Accepting) -> DrainReport:
    report = DrainReport()
    outbox_drain_step("Workspace__c", client, "drainer", report)
    return report


def synced(rows: list[OutboxItem]) -> set[str]:
    pks = [row.pk for row in rows]
    return set(OutboxItem.objects.filter(pk__in=pks, state="synced").values_list("external_id", flat=True))


# --- statements ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_recording_a_call_takes_the_same_statements_for_3_records_as_for_30(live):
    counts = {}
    for count in (3, 30):
        # given
        rows = workspace_rows(count)
        # when
        with CaptureQueriesContext(connection) as queries:
            report = drain_workspaces(Accepting())
        # then
        assert (report.sent, report.synced, report.failed) == (count, count, 0)
        assert synced(rows) == {row.external_id for row in rows}
        counts[count] = len(queries.captured_queries)
    assert counts[3] == counts[30], counts


@pytest.mark.django_db
def test_the_workspaces_carry_their_salesforce_id_and_sync_state(live):
    rows = workspace_rows(3)
    drain_workspaces(Accepting())
    for row in rows:
        workspace = Workspace.objects.get(workspace_id=row.external_id)
        assert (workspace.salesforce_id, workspace.salesforce_state) == (sf_id(row.external_id), "synced")
        assert workspace.salesforce_synced_at is not None
        row.refresh_from_db()
        assert (row.salesforce_id, row.sent_version, row.attempts, row.lease_owner) == (
            sf_id(row.external_id),
            row.version,
            0,
            "",
        )
        assert row.synced_at is not None and row.lease_expires_at is None


@pytest.mark.django_db
def test_a_row_changed_in_flight_keeps_its_newer_version_pending_and_gets_the_salesforce_id(live):
    # given a row whose workspace changes while its call is in flight
    first, second = workspace_rows(2)

    def processing_records_a_newer_version() -> None:
        OutboxItem.objects.filter(pk=first.pk).update(version=F("version") + 1, payload={"Name": first.external_id})

    # when
    report = drain_workspaces(Accepting(during=processing_records_a_newer_version))
    # then the newer version waits to go, with the Salesforce id the first one got
    first.refresh_from_db()
    assert (first.state, first.version, first.sent_version) == ("pending", 2, 1)
    assert (first.salesforce_id, first.lease_owner, first.lease_expires_at) == (sf_id(first.external_id), "", None)
    assert synced([second]) == {second.external_id}
    assert report.synced == 2


# --- the engine's records after a lead conversion, against the emulator ------------------------------


@pytest.mark.django_db
def test_after_a_conversion_the_lead_account_contact_and_workspace_carry_their_salesforce_ids(salesforce):
    process(
        *(lifecycle_event(f"{key}_trial", "trial.started", workspace_id=key, email=f"{key}@{key}.io") for key in "ab"),
        *(
            lifecycle_event(f"{key}_paid", "subscription.converted", workspace_id=key, at=T0 + timedelta(days=3))
            for key in "ab"
        ),
    )
    drain_until_quiet()
    assert set(OutboxItem.objects.values_list("state", flat=True)) == {"synced"}
    for workspace in Workspace.objects.select_related("lead", "account", "contact"):
        sf_lead = salesforce.store.find_one("Lead", Email=workspace.lead.email)
        assert sf_lead["IsConverted"] is True
        assert workspace.lead.salesforce_id == sf_lead["Id"]
        assert workspace.account.salesforce_id == sf_lead["ConvertedAccountId"]
        assert workspace.contact.salesforce_id == sf_lead["ConvertedContactId"]
        sf_workspace = salesforce.store.find_one("Workspace__c", Workspace_ID__c=workspace.workspace_id)
        assert (workspace.salesforce_id, workspace.salesforce_state) == (sf_workspace["Id"], "synced")
    assert Lead.objects.exclude(salesforce_id="").count() == 2
    assert Account.objects.exclude(salesforce_id="").count() == Contact.objects.exclude(salesforce_id="").count() == 2


@pytest.mark.django_db
def test_recording_conversions_takes_the_same_statements_for_2_as_for_6(salesforce):
    updates = {}
    for keys in ("ab", "cdefgh"):
        # given converted workspaces whose leads are in Salesforce
        process(
            *(lifecycle_event(f"{k}_trial", "trial.started", workspace_id=k, email=f"{k}@{k}.io") for k in keys),
            *(
                lifecycle_event(f"{k}_paid", "subscription.converted", workspace_id=k, at=T0 + timedelta(days=3))
                for k in keys
            ),
        )
        outbox_drain_step("Lead", shared_client(), "drainer", DrainReport())
        # when
        report = DrainReport()
        with CaptureQueriesContext(connection) as queries:
            outbox_drain_step("LeadConversion", shared_client(), "drainer", report)
        # then each conversion, its account, its contact and its workspace (sent in the stamps' call) are
        # recorded, in as many UPDATEs for 6 as for 2
        assert report.synced == 4 * len(keys)
        assert report.calls == 2
        updates[len(keys)] = sum(1 for query in queries.captured_queries if "UPDATE" in query["sql"])
    assert updates[2] == updates[6], updates


# --- row locks (PostgreSQL) -----------------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_workspace_held_by_processing_does_not_hold_up_the_batch_nor_deadlock_with_it(live):
    if connection.vendor != "postgresql":
        pytest.skip("row locks between connections: PostgreSQL")
    # given processing holds a workspace's row (one in the middle of the call, whatever its order)
    rows = workspace_rows(5)
    middle = rows[2]
    held, go, errors = threading.Event(), threading.Event(), []
    others = {row.external_id for row in rows if row is not middle}

    def processing() -> None:
        with transaction.atomic():
            Workspace.objects.select_for_update().get(workspace_id=middle.external_id)
            held.set()
            assert go.wait(30)
            # then a colleague's row the batch recorded is free: the drainer holds nothing while it waits
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '5s'")
            Workspace.objects.select_for_update().get(workspace_id=rows[0].external_id)

    holder = _in_thread(processing, errors)
    assert held.wait(10)
    # when the drainer records the call's successes
    drainer = _in_thread(lambda: drain_workspaces(Accepting()), errors)
    try:
        # then the others are recorded at once, and the held one waits for processing
        assert _wait_for(lambda: synced(rows) == others), synced(rows)
        assert Workspace.objects.get(workspace_id=middle.external_id).salesforce_id == ""
    finally:
        go.set()
        holder.join(10)
        drainer.join(10)
    assert errors == []
    # and once processing commits, the held one is recorded too
    assert synced(rows) == others | {middle.external_id}
    assert set(Workspace.objects.values_list("salesforce_state", flat=True)) == {"synced"}


@pytest.mark.django_db(transaction=True)
def test_an_outbox_row_held_by_processing_is_recorded_after_it_with_its_newer_version_kept(live):
    if connection.vendor != "postgresql":
        pytest.skip("row locks between connections: PostgreSQL")
    # given processing holds an outbox row (one in the middle of the call), and records a newer version
    # of it before committing
    rows = workspace_rows(5)
    middle = rows[2]
    held, go, errors = threading.Event(), threading.Event(), []
    others = {row.external_id for row in rows if row is not middle}

    def processing() -> None:
        with transaction.atomic():
            OutboxItem.objects.select_for_update().get(pk=middle.pk)
            held.set()
            assert go.wait(30)
            OutboxItem.objects.filter(pk=middle.pk).update(version=F("version") + 1)

    # when the drainer records the call's successes while the row is held (taken once the call is in
    # flight: the claim skips a row that is held already, see the test below)
    in_flight = threading.Event()

    def call() -> None:
        in_flight.set()
        assert held.wait(10)

    drainer = _in_thread(lambda: drain_workspaces(Accepting(during=call)), errors)
    assert in_flight.wait(10)
    holder = _in_thread(processing, errors)
    try:
        # then every workspace and the other outbox rows are recorded at once
        assert _wait_for(lambda: synced(rows) == others), synced(rows)
        assert _wait_for(lambda: Workspace.objects.exclude(salesforce_id="").count() == 5)
    finally:
        go.set()
        holder.join(10)
        drainer.join(10)
    assert errors == []
    # and the held row, once free, keeps its newer version pending, with the Salesforce id
    held_row = OutboxItem.objects.get(pk=middle.pk)
    assert (held_row.state, held_row.version, held_row.sent_version) == ("pending", 2, 1)
    assert (held_row.salesforce_id, held_row.lease_owner) == (sf_id(held_row.external_id), "")


def _processing_holds(pk: int, go: threading.Event, errors: list[BaseException]) -> threading.Thread:
    """A thread holding this outbox row in a transaction, as processing does, until `go` is set."""
    held = threading.Event()

    def processing() -> None:
        with transaction.atomic():
            OutboxItem.objects.select_for_update().get(pk=pk)
            held.set()
            assert go.wait(30)

    holder = _in_thread(processing, errors)
    assert held.wait(10)
    return holder


@pytest.mark.django_db(transaction=True)
def test_a_converted_workspace_held_by_processing_does_not_ride_and_is_not_waited_for(salesforce):
    if connection.vendor != "postgresql":
        pytest.skip("row locks between connections: PostgreSQL")
    # given a converted workspace whose lead is in Salesforce, and processing holding its Workspace__c row
    process(trial(), converted())
    outbox_drain_step("Lead", shared_client(), "drainer", DrainReport())
    row = OutboxItem.objects.get(object_type="Workspace__c")
    go, errors = threading.Event(), []
    holder = _processing_holds(row.pk, go, errors)
    # when the conversion is sent
    converting = _in_thread(
        lambda: outbox_drain_step("LeadConversion", shared_client(), "drainer", DrainReport()), errors
    )
    try:
        # then it stamps without waiting for the held row, which stays out of the call
        converting.join(10)
        assert not converting.is_alive(), "the conversion waited for a row processing holds"
        assert [e.kind for e in salesforce.requests_log.api_calls()][-1] == "collection_update"
        assert OutboxItem.objects.get(object_type="LeadConversion").state == "synced"
    finally:
        go.set()
        holder.join(10)
    assert errors == []
    row.refresh_from_db()
    assert (row.state, row.lease_owner, row.attempts) == ("pending", "", 0)
    # and it goes on its own lane once free
    outbox_drain_step("Workspace__c", shared_client(), "drainer", DrainReport())
    assert OutboxItem.objects.get(pk=row.pk).state == "synced"


@pytest.mark.django_db(transaction=True)
def test_the_claim_skips_a_row_processing_holds_instead_of_waiting_for_it(live):
    if connection.vendor != "postgresql":
        pytest.skip("row locks between connections: PostgreSQL")
    # given processing holds one of five due rows
    rows = workspace_rows(5)
    middle = rows[2]
    go, errors = threading.Event(), []
    holder = _processing_holds(middle.pk, go, errors)
    # when the drainer claims and sends them
    drainer = _in_thread(lambda: drain_workspaces(Accepting()), errors)
    try:
        # then it does not wait: the other four are sent and recorded, the held one left for later
        drainer.join(10)
        assert not drainer.is_alive(), "the claim waited for a row processing holds"
        assert synced(rows) == {row.external_id for row in rows if row is not middle}
    finally:
        go.set()
        holder.join(10)
        drainer.join(10)
    assert errors == []
    middle.refresh_from_db()
    assert (middle.state, middle.lease_owner) == ("pending", "")
    drain_workspaces(Accepting())
    assert synced(rows) == {row.external_id for row in rows}
