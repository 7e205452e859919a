"""The pilot against the Salesforce emulator: what it holds, what it takes with it, and widening it."""

from __future__ import annotations

import importlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import User
from django.utils import timezone
from django_q.models import Schedule

from alerts.models import Alert, Rep
from alerts.services import workspaces_alerts_after_processing
from emulators.salesforce import Emulator
from emulators.simulate import simulate_traffic
from events.schemas import parse_provisioning_body
from events.services import events_store
from events.store import NewEvent
from failures.models import ErrorKind
from processing.pipeline import workspace_process, workspaces_process
from salesforce.deletion import outbox_record_deletion
from salesforce.models import OutboxItem, SyncControl
from salesforce.outbox import EXTERNAL_ID
from salesforce.pilot import pilot_release, pilot_status, share_bucket, workspace_owner_reps, workspaces_in_pilot
from salesforce.tasks import release_pilot
from salesforce.worker import outbox_drain
from tests.events.helpers import lifecycle_event, queued_tasks, store
from tests.factories import AccountFactory, WorkspaceFactory
from tests.salesforce.test_sync_live import converted, drain_until_quiet, process, trial
from workspaces.models import Account, Lead, Workspace

pytestmark = pytest.mark.django_db


def workspace_key(percent: int, *, inside: bool, besides: tuple[str, ...] = ()) -> str:
    """A workspace id the share pilot of `percent` takes in (or leaves out)."""
    return next(
        key
        for key in (f"ws_{n}" for n in range(1000))
        if (share_bucket(key) < percent) == inside and key not in besides
    )


def recent_trials(count: int) -> list[NewEvent]:
    """Trials started just now, each from its own company (no account): their alerts are routed by turns."""
    return [trial(f"ws_{n}", email=f"p{n}@acme{n}.io", at=timezone.now() - timedelta(minutes=5)) for n in range(count)]


def row(object_type: str, external_id: str) -> OutboxItem:
    return OutboxItem.objects.get(object_type=object_type, external_id=external_id)


def simulated(workspaces: int, seed: int) -> list[str]:
    """Store a simulated history (CONTRACT §2 bodies, as the webhook parses them) and process each workspace
    in the order its first event arrived; return the workspace ids in that order."""
    messages = simulate_traffic(workspaces=workspaces, now=datetime(2026, 12, 1, 12, tzinfo=UTC), seed=seed)
    keys = list(dict.fromkeys(message.workspace_id for message in messages))
    events = []
    for message in messages:
        parsed = parse_provisioning_body(json.dumps(message.body).encode())
        events.append(
            NewEvent(
                source="provisioning",
                external_id=message.msg_id,
                type=parsed.type,
                occurred_at=parsed.occurred_at,
                workspace_key=parsed.workspace_key,
                payload=parsed.body,
            )
        )
    events_store(list({event.external_id: event for event in events}.values()))
    for key in keys:
        workspaces_process(workspace_keys=[key])
    return keys


def arrived_once(salesforce: Emulator) -> None:
    """Every outbox row is synced, and Salesforce holds each record exactly once."""
    rows = Counter(OutboxItem.objects.values_list("object_type", "state"))
    assert set(state for _, state in rows) == {"synced"}, rows
    for object_type in ("Lead", "Account", "Contact", "Workspace__c"):
        ids = [record.get(EXTERNAL_ID) for record in salesforce.store.records(object_type)]
        assert len(ids) == len(set(ids)) == OutboxItem.objects.filter(object_type=object_type).count(), object_type
    conversions = OutboxItem.objects.filter(object_type="LeadConversion").count()
    assert salesforce.requests_log.records_sent("convert_lead") == conversions


# --- a record the pilot sends takes what it depends on with it ---------------------------------------


def test_a_shared_account_outside_the_pilot_goes_with_the_pilot_workspace_on_it(salesforce, settings):
    # given a customer outside the pilot whose conversion made the account, held with it
    settings.SALESFORCE_PILOT_PERCENT = 50
    outside = workspace_key(50, inside=False)
    inside = workspace_key(50, inside=True)
    process(trial(outside), converted(outside))
    drain_until_quiet()
    account_key = f"acc_{Account.objects.get().pk}"
    assert row("Account", account_key).state == "held"

    # when a colleague in the pilot starts a trial on the same account
    process(trial(inside, email="lee@acme.io"))
    drain_until_quiet()

    # then the account goes with them: their workspace arrives, pointing at it, and nothing failed
    account = salesforce.store.find_one("Account", **{EXTERNAL_ID: account_key})
    workspace = salesforce.store.find_one("Workspace__c", Workspace_ID__c=inside)
    assert workspace is not None and workspace["Account__c"] == account["Id"]
    assert row("Account", account_key).state == "synced"
    assert not OutboxItem.objects.exclude(error_code="").exists()
    # and what only the customer outside the pilot uses stays held
    assert row("Workspace__c", outside).state == "held"
    assert row("LeadConversion", f"lead_{Lead.objects.get(email='dana@acme.io').pk}").state == "held"
    assert salesforce.store.count("Account") == 1


def test_a_conversion_of_a_held_workspace_after_a_widening_takes_its_lead_with_it(salesforce, settings):
    # given a trial held by a pilot, which then widened (no release pass has run yet)
    settings.SALESFORCE_PILOT_PERCENT = 0
    process(trial())
    outbox_drain()
    assert row("Lead", f"lead_{Lead.objects.get().pk}").state == "held"
    settings.SALESFORCE_PILOT_PERCENT = 100

    # when the workspace converts: only its changed rows are queued, not its lead
    process(converted())
    drain_until_quiet()

    # then the conversion released its lead and waited for it: converted once, never refused
    assert not ErrorKind.objects.filter(kind="LEAD_NOT_IN_SALESFORCE").exists()
    assert salesforce.store.find_one("Lead", Email="dana@acme.io")["IsConverted"] is True
    arrived_once(salesforce)


def test_the_pilot_never_holds_a_privacy_erasure(salesforce, settings):
    # given a lead in Salesforce whose workspace is outside the pilot now
    process(trial())
    outbox_drain()
    settings.SALESFORCE_PILOT_PERCENT = 0
    lead = row("Lead", f"lead_{Lead.objects.get().pk}")

    # when its erasure deletes it
    outbox_record_deletion(target=lead)
    outbox_drain()

    # then it is gone from Salesforce
    assert salesforce.store.find_one("Lead", Email="dana@acme.io") is None
    assert row("Deletion", f"Lead:{lead.external_id}").state == "synced"


# --- widening -----------------------------------------------------------------------------------------


def test_a_share_pilot_of_simulated_traffic_sends_all_its_workspaces_then_everything_once_widened(salesforce, settings):
    # given 60 simulated workspaces (seed 21: shared accounts, conversions) and a pilot of 30 %
    settings.SALESFORCE_PILOT_PERCENT = 30
    keys = simulated(60, seed=21)
    pilot = workspaces_in_pilot(keys)
    drain_until_quiet(8)

    # then every pilot workspace arrived (with what it uses), nothing failed, and the rest is held
    arrived = {record["Workspace_ID__c"] for record in salesforce.store.records("Workspace__c")}
    assert arrived == pilot and 10 <= len(pilot) <= 30  # about 30 % of 60; the exact number is the seed's
    assert not OutboxItem.objects.exclude(error_code="").exists()
    assert Counter(OutboxItem.objects.filter(object_type="Workspace__c").values_list("state", flat=True)) == {
        "synced": len(pilot),
        "held": 60 - len(pilot),
    }

    # when the pilot ends (a restart with 100 %) and the release passes run, 50 rows a pass
    settings.SALESFORCE_PILOT_PERCENT = 100
    passes = 0
    while not (report := pilot_release(limit=50)).done or report.released:
        passes += 1
        # a controlled rate: at most 50 rows a pass, each with what it depends on (a held lead or account)
        assert report.looked <= 50 and report.released <= 2 * 50, "a controlled rate"
        drain_until_quiet(3)
    drain_until_quiet()

    # then everything arrived exactly once
    assert passes > 1
    assert len(salesforce.store.records("Workspace__c")) == 60
    arrived_once(salesforce)
    assert not OutboxItem.objects.exclude(error_code="").exists()


def test_a_release_goes_at_its_rate_and_shows_its_progress(salesforce, settings):
    # given five trials held by a pilot of 0 %
    settings.SALESFORCE_PILOT_PERCENT = 0
    process(*(trial(f"ws_{n}", email=f"p{n}@acme{n}.io") for n in range(5)))
    outbox_drain()
    assert pilot_status().held_rows == 10

    # when the pilot ends and one release pass runs with room for four rows
    settings.SALESFORCE_PILOT_PERCENT = 100
    report = pilot_release(limit=4)
    outbox_drain()

    # then four rows (two leads, two workspaces) went, in order, and the progress says how far it got
    assert (report.looked, report.released, report.done) == (4, 4, False)
    assert salesforce.store.count("Workspace__c") == salesforce.store.count("Lead") == 2
    status = pilot_status()
    assert (status.passing, status.looked, status.total, status.released, status.held_rows) == (True, 4, 10, 4, 6)
    assert "4 of 10 held records gone over, 4 released so far" in status.progress

    # and the next passes finish it
    while not pilot_release(limit=4).done:
        pass
    drain_until_quiet()
    assert salesforce.store.count("Workspace__c") == 5
    control = SyncControl.objects.get()
    assert (control.pilot_key, control.pilot_cursor, control.pilot_released) == ("all", None, 10)
    arrived_once(salesforce)


def test_the_release_runs_every_minute_and_rings_the_drainer(salesforce, settings):
    # given a trial held by a pilot that has since ended
    settings.SALESFORCE_PILOT_PERCENT = 0
    process(trial())
    outbox_drain()
    settings.SALESFORCE_PILOT_PERCENT = 100

    # when the scheduled task runs
    result = release_pilot()

    # then it released the trial's two records and queued a drain to send them
    assert Schedule.objects.filter(func="salesforce.tasks.release_pilot", minutes=1, repeats=-1).exists()
    assert (result["released"], result["done"]) == (2, True)
    assert len(queued_tasks("salesforce.tasks.drain_outbox")) == 1


def test_adding_a_rep_to_the_pilot_releases_their_customers(salesforce, settings):
    # given two reps sharing trials by round robin, and a pilot of ann's customers
    for name in ("ann", "bo"):
        Rep.objects.create(user=User.objects.create_user(name))
    settings.SALESFORCE_PILOT_REPS = ["ann"]
    process(*recent_trials(4))
    drain_until_quiet()
    bos = {key for key in ("ws_0", "ws_1", "ws_2", "ws_3") if row("Workspace__c", key).state == "held"}
    assert len(bos) == 2

    # when bo joins the pilot
    settings.SALESFORCE_PILOT_REPS = ["ann", "bo"]
    pilot_release()
    drain_until_quiet()

    # then bo's customers arrive too
    assert salesforce.store.count("Workspace__c") == 4
    arrived_once(salesforce)


def test_a_customer_whose_rep_was_assigned_after_the_drainer_looked_is_released_within_a_minute(salesforce, settings):
    # given a rep pilot whose pass over the held records is done
    Rep.objects.create(user=User.objects.create_user("ann"))
    settings.SALESFORCE_PILOT_REPS = ["ann"]
    pilot_release()
    # and a new trial drained before its first alert assigned it an owner
    store(*recent_trials(1))
    workspace_process(workspace_key="ws_0", alerts=False)
    outbox_drain()
    assert row("Workspace__c", "ws_0").state == "held"
    workspaces_alerts_after_processing(workspace_keys=["ws_0"])

    # when the next release runs (a minute later)
    assert pilot_release().released == 2
    drain_until_quiet()

    # then the customer is in Salesforce
    assert salesforce.store.find_one("Workspace__c", Workspace_ID__c="ws_0") is not None
    arrived_once(salesforce)


# --- the pilot unit: the rep who owns the customer ----------------------------------------------------


def test_a_rep_pilot_covers_the_customers_their_alerts_go_to_converted_ones_too(salesforce, settings):
    # given two reps; trials without an account are routed to them by turns (alerts/routing.py)
    Rep.objects.create(user=User.objects.create_user("ann"))
    Rep.objects.create(user=User.objects.create_user("bo"))
    settings.SALESFORCE_PILOT_REPS = ["ann"]
    process(*recent_trials(4))
    owners = dict(Workspace.objects.values_list("workspace_id", "owner__username"))
    anns = {key for key, owner in owners.items() if owner == "ann"}
    assert len(anns) == 2

    # when ann's customers (one of them converting: its new account has no owner) are drained
    first = sorted(anns)[0]
    process(lifecycle_event(f"{first}_paid", "subscription.converted", workspace_id=first, at=timezone.now()))
    drain_until_quiet()

    # then ann's pilot sent exactly her customers, the converted one with its account and contact
    arrived = {record["Workspace_ID__c"] for record in salesforce.store.records("Workspace__c")}
    assert arrived == anns
    assert Account.objects.get().owner is None
    assert salesforce.store.count("Account") == salesforce.store.count("Contact") == 1
    assert salesforce.store.find_one("Workspace__c", Workspace_ID__c=first)["Self_Serve_Status__c"] == "Paid"


def test_the_owner_rep_is_the_accounts_else_the_customers_kept_one():
    ann, bo, cy = (User.objects.create_user(name) for name in ("ann", "bo", "cy"))
    owned, shared = AccountFactory(owner=bo), AccountFactory()
    WorkspaceFactory(workspace_id="ws_owned", account=owned, owner=ann)  # the account's owner wins
    WorkspaceFactory(workspace_id="ws_kept", owner=ann)
    WorkspaceFactory(workspace_id="ws_colleague", account=shared)  # its colleague's kept owner
    WorkspaceFactory(workspace_id="ws_first", account=shared, owner=cy, owner_since=timezone.now())
    WorkspaceFactory(workspace_id="ws_nobody")

    owners = workspace_owner_reps(["ws_owned", "ws_kept", "ws_colleague", "ws_first", "ws_nobody"])

    assert owners == {"ws_owned": "bo", "ws_kept": "ann", "ws_colleague": "cy", "ws_first": "cy"}


def test_customers_routed_before_owners_were_kept_get_their_first_alerts_rep_as_owner():
    """alerts/migrations/0010: the pilot reads owners from the workspace alone, so the old fallback (the
    rep of the first rep alert) became the owner of such customers when the apps were put in layers."""
    backfill = importlib.import_module("alerts.migrations.0010_owners_from_first_alert").backfill
    ann, bo = (User.objects.create_user(name) for name in ("ann", "bo"))
    WorkspaceFactory(workspace_id="ws_alerted")
    WorkspaceFactory(workspace_id="ws_owned", owner=ann)
    WorkspaceFactory(workspace_id="ws_nobody")
    for recipient, key in ((bo, "ws_alerted"), (ann, "ws_alerted"), (bo, "ws_owned")):
        Alert.objects.create(
            rule="trial_expiring", dedupe_key=f"{key}:{recipient}", audience="rep", workspace_key=key,
            title="t", reason="r", recipient=recipient,
        )  # fmt: skip

    backfill(django_apps, None)

    owners = workspace_owner_reps(["ws_alerted", "ws_owned", "ws_nobody"])
    assert owners == {"ws_alerted": "bo", "ws_owned": "ann"}
    assert Workspace.objects.get(workspace_id="ws_alerted").owner_why.startswith("The rep its first alert went to")


# --- what the admin sees ------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("admin", "admin@example.com", None))
    return client


def test_the_outbox_page_and_the_ops_dashboard_show_the_pilot_in_force(admin_client, salesforce, settings):
    # given a pilot of 0 % holding one trial
    settings.SALESFORCE_PILOT_PERCENT = 0
    process(trial())
    outbox_drain()

    # when the admin opens the outbox page and the ops dashboard
    outbox = admin_client.get("/admin/sync/outboxitem/").content.decode()
    ops = admin_client.get("/ops/")

    # then both say who the pilot covers, and how much it holds
    assert "Pilot: 0 % of workspaces — 2 records (1 workspace) held" in outbox
    assert "?state__exact=held" in outbox
    shown = {figure.label: figure for section in ops.context["sections"] for figure in section.figures}
    assert shown["Pilot"].value == "0 % of workspaces"
    assert shown["Held outside the pilot"].value == "2 records (1 workspace)"
    assert shown["Release after a widening"].note == "No release pass yet."
