"""Build the "pre-layers" database fixtures of the migrate-forward test (issue 20, tests/migrations/).

The fixtures are a database as the code of commit d253482 (the last commit before the apps were restructured)
leaves it: every migration of that commit applied, then a few representative rows in every model of the
project's apps, a user in each role group, hand-made permission grants and the django-q schedules the
migrations made. `test_migrate_forward.py` migrates a copy with the current code and checks nothing was lost.

Run it INSIDE a checkout of d253482 (it uses that code's models), against an empty database; it writes
`pre_layers.<vendor>.*` into the folder given (the fixture and, beside it, `pre_layers.<vendor>.json`, the
description of what the database holds, from tests/migrations/state.py). To regenerate both, from the repo:

    git worktree add /tmp/pre_layers d253482 && ln -s "$PWD/.venv" /tmp/pre_layers/.venv
    cd /tmp/pre_layers
    rm -f /tmp/pre_layers.sqlite3
    DATABASE_URL=sqlite:////tmp/pre_layers.sqlite3 .venv/bin/python \\
        "$OLDPWD/tests/migrations/make_fixture.py" "$OLDPWD/tests/migrations/fixtures"
    psql -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS lc_pre_layers' -c 'CREATE DATABASE lc_pre_layers'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/lc_pre_layers .venv/bin/python \\
        "$OLDPWD/tests/migrations/make_fixture.py" "$OLDPWD/tests/migrations/fixtures"
    cd - && git worktree remove --force /tmp/pre_layers

Everything is deterministic: the clock is frozen at FROZEN for the migrations and the rows (auto_now fields,
audit entries, schedules' next runs), no value is random, the hash seed is fixed, and the same run gives the
same rows on both vendors. The PostgreSQL dump is byte for byte the same each run; in the SQLite file only the
key order inside audit entries' JSON may differ (django-auditlog walks a set of fields). SQLite is written as a
gzipped database file, PostgreSQL as gzipped plain SQL from `pg_dump --no-owner --no-privileges`.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

FROZEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
COMMIT = "d253482"
#: Settings the old code needs outside the test suite, fixed so hashes (tombstones) are the same every run.
ENVIRONMENT = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "1",
    "ENV_FILE": "",
    "PRIVACY_HASH_SALT": "pre-layers-fixture-salt",
}


def at(days: float = 0, hours: float = 0) -> datetime:
    """A fixed moment relative to FROZEN."""
    return FROZEN + timedelta(days=days, hours=hours)


def setup_django() -> None:
    """Configure the old checkout (the working directory) as Django, and make state.py importable."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if "DATABASE_URL" not in os.environ:
        sys.exit("Set DATABASE_URL to an empty SQLite file or PostgreSQL database.")
    sys.path[:0] = [os.getcwd(), str(Path(__file__).resolve().parent)]
    import django

    django.setup()
    from django.apps import apps

    if not apps.is_installed("linking") or not apps.is_installed("triggers"):
        sys.exit(f"Run this inside a checkout of {COMMIT} (the apps before the restructure).")


def ensure_empty() -> None:
    """The fixture is a fresh database: refuse one that already has tables."""
    from django.db import connection

    if connection.introspection.table_names():
        sys.exit("The database is not empty: give a fresh SQLite file or PostgreSQL database.")


def make_users() -> dict[str, Any]:
    """A user in each role group (and the API services group), plus a custom group with hand-made grants on
    the models that move, and a direct user grant: their permissions must follow the models' new labels."""
    from django.contrib.auth.models import Group, Permission, User

    def user(username: str, group: str | None, **fields: Any) -> User:
        made = User.objects.create(
            username=username,
            password="!pre-layers-fixture-no-password",
            email=f"{username}@engine.example",
            date_joined=FROZEN,
            **fields,
        )
        if group:
            made.groups.add(Group.objects.get_or_create(name=group)[0])
        return made

    users = {
        "root": user("root", None, is_staff=True, is_superuser=True, first_name="Root"),
        "admin": user("admin", "Lifecycle admins", is_staff=True, first_name="Ada", last_name="Admin"),
        "auditor": user("auditor", "Auditors", is_staff=True),
        "rep_berlin": user("rep_berlin", "Reps", first_name="Bea", last_name="Berlin"),
        "rep_london": user("rep_london", "Reps", first_name="Leo", last_name="London"),
        "rep_austin": user("rep_austin", "Reps", first_name="Ann", last_name="Austin"),
        "api_reader": user("api_reader", "API services"),
        "support": user("support", "Support desk", is_staff=True),
    }
    moved = {
        "events": ["view_workspacelock"],
        "linking": ["view_reviewitem", "change_reviewitem"],
        "ops": ["view_heartbeat", "view_errorkind", "change_errorkind", "view_sourceday", "view_rollupcursor"],
        "triggers": ["view_usagedaily", "view_usagedailyuser"],
        "sync": ["view_outboxitem"],
    }
    support = Group.objects.get(name="Support desk")
    for app_label, codenames in moved.items():
        support.permissions.add(*Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames))
    users["rep_berlin"].user_permissions.add(
        Permission.objects.get(content_type__app_label="linking", codename="view_reviewitem"),
        Permission.objects.get(content_type__app_label="ops", codename="view_dashboard"),
    )
    return users


def make_customers(users: dict[str, Any]) -> dict[str, list[Any]]:
    """Accounts, contacts, leads (one converted, one from Marketo) and workspaces in every status."""
    from workspaces.models import Account, Contact, Lead, Workspace

    accounts = [
        Account.objects.create(name="Acme GmbH", domain="acme.de", owner=users["rep_berlin"], salesforce_id="001A"),
        Account.objects.create(name="Globex Ltd", domain="globex.co.uk", salesforce_id="001B"),
        Account.objects.create(name="Initech", domain="initech.com"),
        Account.objects.create(name="Free-mail person", domain=None),
    ]
    contacts = [
        Contact.objects.create(email="dana@acme.de", first_name="Dana", account=accounts[0], salesforce_id="003A"),
        Contact.objects.create(email="gil@globex.co.uk", first_name="Gil", account=accounts[1]),
        Contact.objects.create(email="ira@initech.com", account=accounts[2]),
    ]
    leads = [
        Lead.objects.create(
            email="dana@acme.de",
            first_name="Dana",
            last_name="Reyes",
            company="Acme",
            converted_at=at(-20),
            converted_account=accounts[0],
            converted_contact=contacts[0],
            salesforce_id="00QA",
        ),
        Lead.objects.create(email="gil@globex.co.uk", first_name="Gil", company="Globex"),
        Lead.objects.create(email="mo@initech.com", lead_source=Lead.Source.MARKETO, marketo_lead_id="mkto-1"),
        Lead.objects.create(email="sam@gmail.com", first_name="Sam"),
        Lead.objects.create(email="ursula@ümlaut.example", first_name="Ursula", company="Ümlaut & Söhne"),
    ]
    statuses = [Workspace.Status.TRIAL, Workspace.Status.PAID, Workspace.Status.CHURNED]
    workspaces = []
    for n in range(8):
        status = statuses[n % 3]
        workspaces.append(
            Workspace.objects.create(
                workspace_id=f"ws_{n:05d}",
                name=f"Workspace {n}",
                status=status,
                email=leads[n % 5].email,
                first_name="Dana",
                company=leads[n % 5].company,
                plan="" if status == "trial" else ("team" if n % 2 else "business"),
                mrr=None if status == "trial" else Decimal("49.50") * (n + 1),
                currency="EUR" if n % 2 else "USD",
                subscription_id="" if status == "trial" else f"sub_{n}",
                billing_interval="" if status == "trial" else "month",
                trial_started_at=at(-40 + n),
                trial_expires_at=at(-26 + n),
                converted_at=at(-30 + n) if status != "trial" else None,
                churned_at=at(-5) if status == "churned" else None,
                churn_reason="too expensive" if status == "churned" else "",
                trial_history=[{"started_at": at(-60).isoformat()}] if n == 4 else [],
                at_risk=n == 1,
                at_risk_since=at(-2) if n == 1 else None,
                renews_at=at(10 + n) if status == "paid" else None,
                needs_review=n == 3,
                review_reasons=["conflicting_data"] if n == 3 else [],
                lead=leads[n % 5],
                account=accounts[n % 4] if n % 4 != 3 else None,
                contact=contacts[0] if n == 0 else None,
                salesforce_id=f"a0W{n}" if n < 4 else "",
                salesforce_state="synced" if n < 4 else "pending",
                salesforce_synced_at=at(-1) if n < 4 else None,
                linked_by_admin=n == 2,
                last_event_at=at(-1, hours=n),
                timezone=["Europe/Berlin", "America/Chicago", ""][n % 3],
                acquisition_channel="ads" if n % 2 else "organic",
                campaign=f"spring-{n}" if n % 2 else "",
                owner=users["rep_london"] if n in (1, 5) else None,
                owner_since=at(-3) if n in (1, 5) else None,
                owner_why="round robin" if n in (1, 5) else "",
            )
        )
    return {"accounts": accounts, "contacts": contacts, "leads": leads, "workspaces": workspaces}


def make_events(workspaces: list[Any]) -> list[Any]:
    """Two events in each status (one per source where it fits), batches and one lock per workspace."""
    from events.models import Event, WebhookBatch, WorkspaceLock

    events = []
    sources = [Event.Source.PROVISIONING, Event.Source.STRIPE, Event.Source.MARKETO]
    for n, status in enumerate(Event.Status.values * 2):
        key = workspaces[n % len(workspaces)].workspace_id
        processing = status == Event.Status.PROCESSING
        events.append(
            Event.objects.create(
                source=sources[n % 3],
                external_id=f"msg_{n:06d}",
                type=["trial.started", "customer.subscription.created", "lead.created"][n % 3],
                occurred_at=at(-2, hours=n),
                received_at=at(-2, hours=n) + timedelta(seconds=3),
                workspace_key=key,
                payload={"type": "trial.started", "data": {"workspace_id": key, "email": "dana@acme.de", "n": n}}
                if status != Event.Status.REJECTED
                else "not json {",
                status=status,
                retry_count=3 if status == Event.Status.ERROR else 0,
                next_attempt_at=at(0, hours=1) if status in Event.OPEN_STATUSES else None,
                notes="ValueError: boom" if status == Event.Status.ERROR else "",
                lease_owner="worker-1" if processing else "",
                lease_expires_at=at(0, hours=0.1) if processing else None,
                completed_at=at(-2, hours=n + 0.01) if status == Event.Status.COMPLETED else None,
                payload_scrubbed_at=at(-1) if n == 4 else None,
                suppressed=status == Event.Status.IGNORED and n > 7,
            )
        )
    WebhookBatch.objects.create(webhook_id="batch_0001", received_at=at(-1), events=3, accepted=2, duplicates=1)
    WebhookBatch.objects.create(webhook_id="batch_0002", received_at=at(-0.5), events=2, ignored=1, rejected=1)
    for n, workspace in enumerate(workspaces):
        WorkspaceLock.objects.create(workspace_key=workspace.workspace_id, processed_at=at(-1, hours=n))
    return events


def make_review_items(customers: dict[str, list[Any]], events: list[Any], admin: Any) -> None:
    """Review items of several kinds, one resolved later (so its audit trail has a create, the events added
    and an update), through the ORM so django-auditlog writes their LogEntry rows as it does in service."""
    from linking.models import ReviewItem

    workspaces, leads = customers["workspaces"], customers["leads"]
    kinds = [
        ReviewItem.Kind.CONFLICTING_DATA,
        ReviewItem.Kind.NO_ACCOUNT_MATCH,
        ReviewItem.Kind.PROCESSING_FAILED,
        ReviewItem.Kind.REJECTED_EVENT,
        ReviewItem.Kind.SYNC_FAILED,
    ]
    items = []
    for n, kind in enumerate(kinds):
        item = ReviewItem.objects.create(
            kind=kind,
            dedupe_key=f"{kind}:{n}",
            reason=f"Review {kind} of {workspaces[n].workspace_id}",
            workspace=workspaces[n],
            lead=leads[n] if n < 3 else None,
        )
        item.events.add(events[n], events[n + 7])
        items.append(item)
    items[0].status = ReviewItem.Status.RESOLVED
    items[0].resolution_note = "Linked to Acme by hand."
    items[0].resolved_by = admin
    items[0].resolved_at = at(0)
    items[0].save()


def make_outbox() -> None:
    """An outbox row in every state, one depending on another, and the sync's single control row filled in."""
    from sync.models import OutboxItem, SyncControl

    states = OutboxItem.State.values
    types = OutboxItem.ObjectType.values
    rows = []
    for n, state in enumerate([*states, "synced"]):
        rows.append(
            OutboxItem.objects.create(
                object_type=types[n % len(types)],
                external_id=f"ws_{n:05d}",
                workspace_key=f"ws_{n:05d}",
                payload={"Name": f"Workspace {n}", "Status__c": "Trial", "MRR__c": 49.5 * n},
                version=n + 1,
                sent_version=n if state == "synced" else 0,
                state=state,
                depends_on=rows[0] if n == 3 else None,
                salesforce_id=f"a0W{n}" if state == "synced" else "",
                error_code="UNABLE_TO_LOCK_ROW" if state in ("retry", "dead") else "",
                error_message="unable to obtain exclusive access" if state in ("retry", "dead") else "",
                attempts=5 if state == "dead" else (1 if state == "retry" else 0),
                next_attempt_at=at(0, hours=1) if state in ("pending", "retry") else None,
                synced_at=at(-1) if state == "synced" else None,
            )
        )
    control = SyncControl.objects.get_or_create(pk=1)[0]  # sync 0004 made the row
    for name, value in dict(
        paused_until=at(0, hours=2),
        pause_reason="REQUEST_LIMIT_EXCEEDED",
        api_used=1200,
        api_max=15000,
        api_checked_at=at(-0.1),
        last_success_at=at(-0.2),
        drain_dirty=True,
        pilot_key="ws_00001,ws_00002",
        pilot_cursor=3,
        pilot_started_at=at(-0.3),
        pilot_total=2,
        pilot_looked=1,
        pilot_released=1,
    ).items():
        setattr(control, name, value)
    control.save()


def make_alerts(users: dict[str, Any], workspaces: list[Any]) -> None:
    """Reps with settings (quiet hours, time away with a backup), territories, alerts in every status with
    deliveries, exchange rates, the round-robin cursor and one edited rule (the rules come from migrations)."""
    from alerts.models import Alert, AlertRule, Delivery, ExchangeRate, Rep, RoutingCursor, TerritoryRule

    berlin = Rep.objects.create(
        user=users["rep_berlin"],
        slack_member_id="U012AB3CD",
        time_zone="Europe/Berlin",
        quiet_start=time(22, 0),
        quiet_end=time(7, 0),
        digest_hour=8,
    )
    london = Rep.objects.create(user=users["rep_london"], delivery=Rep.Delivery.DIGEST, time_zone="Europe/London")
    Rep.objects.create(
        user=users["rep_austin"],
        email="ann.alerts@engine.example",
        slack_on=False,
        time_zone="America/Chicago",
        away_from=date(2026, 11, 18),
        away_until=date(2026, 11, 30),
        backup=berlin,
    )
    TerritoryRule.objects.create(name="DACH", rep=berlin, domains="acme.de\nexample.at", country="DE", priority=10)
    TerritoryRule.objects.create(name="UK", rep=london, country="GB", priority=20, active=False)
    RoutingCursor.objects.create(name="reps", position=7)
    rule = AlertRule.objects.get(key="trial_expiring")
    rule.days_before = "5,2"
    rule.send_slack = False
    rule.save()
    for n, status in enumerate([*Alert.Status.values, "open"]):
        rep = n % 2 == 0
        alert = Alert.objects.create(
            rule=["trial_expiring", "needs_review", "payment_failed", "converted", "churned"][n],
            dedupe_key=f"rule{n}:ws_{n:05d}:2026-11",
            audience=Alert.Audience.REP if rep else Alert.Audience.ADMINS,
            workspace_key=workspaces[n].workspace_id,
            workspace=workspaces[n],
            title=f"Alert {n} about {workspaces[n].workspace_id}",
            reason="Trial ends in 2 days.",
            context={"event_ids": [n + 1], "values": {"days_left": 2}},
            recipient=users["rep_berlin"] if rep else None,
            routed_by=Alert.RoutedBy.TERRITORY if rep else Alert.RoutedBy.ADMINS,
            routing="DACH territory" if rep else "admins",
            status=status,
            acknowledged_at=at(-0.5) if status == "acknowledged" else None,
            acknowledged_by=users["rep_berlin"] if status == "acknowledged" else None,
            snoozed_until=at(1) if status == "snoozed" else None,
            resolved_at=at(-0.2) if status == "resolved" else None,
            resolved_by=users["admin"] if status == "resolved" else None,
        )
        for channel in Delivery.Channel.values:
            Delivery.objects.create(
                alert=alert,
                channel=channel,
                recipient="bea@engine.example" if channel == "email" else "webhook",
                user=users["rep_berlin"] if rep else None,
                mode=Delivery.Mode.DIGEST if n == 3 else Delivery.Mode.INSTANT,
                status=Delivery.Status.values[(n + len(channel)) % len(Delivery.Status.values)],
                attempts=n,
                last_error="SMTP 451" if n == 2 else "",
                sent_at=at(-0.1) if n == 1 else None,
            )
    ExchangeRate.objects.create(currency="EUR", reporting_currency="USD", rate=Decimal("1.08"), as_of=date(2026, 11, 1))
    ExchangeRate.objects.create(
        currency="GBP", reporting_currency="USD", rate=Decimal("1.27345678"), as_of=date(2026, 11, 2)
    )


def make_ops() -> None:
    """Both heartbeats, error kinds (one pointing at a review item by content type), traffic per source and
    day, and the traffic rollup's cursor."""
    from django.contrib.contenttypes.models import ContentType

    from linking.models import ReviewItem
    from ops.models import ErrorKind, Heartbeat, RollupCursor, SourceDay

    Heartbeat.objects.create(name=Heartbeat.Name.QUEUE, beat_at=at(-0.01), details={"task": "heartbeat"})
    Heartbeat.objects.create(name=Heartbeat.Name.SWEEPER, beat_at=at(-0.02), details={"due": 3, "taken": 3})
    for n, source in enumerate(ErrorKind.Source.values):
        ErrorKind.objects.create(
            fingerprint=f"{n:064x}",
            source=source,
            kind=["ValueError", "UNABLE_TO_LOCK_ROW", "SMTPException"][n],
            message="could not process event <id> for <email>",
            count=10 * (n + 1),
            first_seen=at(-3),
            last_seen=at(-0.1),
            last_example="could not process event 12 for d***@acme.de",
            last_workspace_key="ws_00001",
            last_object_type=ContentType.objects.get_for_model(ReviewItem) if n == 0 else None,
            last_object_id="1" if n == 0 else "",
            window_start=at(-0.1),
            window_count=n,
            resolved_at=at(-1) if n == 2 else None,
        )
    for n, source in enumerate(["provisioning", "stripe"]):
        for day in range(2):
            SourceDay.objects.create(
                source=source,
                day=date(2026, 11, 18 + day),
                count=100 * (n + 1) + day,
                first_at=at(-2 + day),
                last_at=at(-1.5 + day),
            )
    RollupCursor.objects.create(name="source_traffic", position=14)


def make_privacy() -> None:
    """Two tombstones and a data request in each status (only the pending one keeps an address)."""
    from privacy.identity import email_hash
    from privacy.models import DataRequest, Tombstone

    Tombstone.objects.create(email_hash=email_hash("gone@erased.example"))
    Tombstone.objects.create(email_hash=email_hash("also.gone@erased.example"))
    DataRequest.objects.create(
        kind=DataRequest.Kind.EXPORT,
        email="sam@gmail.com",
        email_hash=email_hash("sam@gmail.com"),
        requested_by_name="admin",
    )
    DataRequest.objects.create(
        kind=DataRequest.Kind.ERASE,
        status=DataRequest.Status.DONE,
        email_hash=email_hash("gone@erased.example"),
        note="TICKET-12",
        requested_by_name="ops",
        completed_at=at(-1),
        summary={"workspaces": 1, "events": 4},
    )
    DataRequest.objects.create(
        kind=DataRequest.Kind.EXPORT,
        status=DataRequest.Status.FAILED,
        email="mo@initech.com",
        email_hash=email_hash("mo@initech.com"),
        requested_by_name="admin",
        error="timeout",
    )


def make_usage(workspaces: list[Any]) -> None:
    """Usage rollups (per day and per user), tickets, plan-limit hits, a cohort of our own beside the shipped
    ones, profiles with stages, and cohort and stage history (open and closed periods)."""
    from triggers.models import UsageDaily, UsageDailyUser
    from usage.models import Cohort, CohortMembership, PlanLimitDaily, Profile, Stage, StagePeriod, SupportTicket

    for n in range(10):
        key = workspaces[n % 4].workspace_id
        UsageDaily.objects.create(
            workspace_key=key,
            feature=["send_envelope", "api_call"][n % 2],
            product="esign" if n % 3 else "",
            day=date(2026, 11, 10 + n),
            events=n + 1,
            count=(n + 1) * 3,
            duration_seconds=1.5 * n,
            errors=n % 2,
            first_seen_at=at(-10 + n),
            last_seen_at=at(-10 + n, hours=2),
        )
        UsageDailyUser.objects.create(
            workspace_key=key,
            feature=["send_envelope", "api_call"][n % 2],
            product="esign" if n % 3 else "",
            day=date(2026, 11, 10 + n),
            user_email=f"user{n % 3}@acme.de",
        )
    for n, priority in enumerate(SupportTicket.Priority.values):
        SupportTicket.objects.create(
            workspace_key=workspaces[n].workspace_id,
            ticket_id=f"T-{n}",
            priority=priority,
            opened_at=at(-3 + n),
            resolved_at=at(-1) if n % 2 else None,
            satisfaction=4 if n % 2 else None,
        )
    for n in range(3):
        PlanLimitDaily.objects.create(
            workspace_key=workspaces[n].workspace_id,
            limit=["seats", "envelopes", "api_calls"][n],
            day=date(2026, 11, 19),
            hits=n + 2,
            last_hit_at=at(-1, hours=n),
        )
    own = Cohort.objects.create(
        key="big_senders",
        name="Big senders",
        description="Sent 100 envelopes in a week.",
        condition={"all": [{"metric": "events_7d", "op": ">=", "value": 100}]},
        version=2,
    )
    at_risk, adopted = Stage.objects.get(key="at_risk"), Stage.objects.get(key="adopted")
    for n in range(4):
        key = workspaces[n].workspace_id
        Profile.objects.create(
            workspace_key=key,
            metrics={"active_days_7d": n, "events_7d": 40 * n},
            timezone="Europe/Berlin" if n % 2 else "UTC",
            day=date(2026, 11, 20),
            stage=adopted if n % 2 else at_risk,
            stage_since=at(-3),
            evaluated_at=at(0),
            next_due_at=at(0.5) if n % 2 else None,
        )
        CohortMembership.objects.create(
            workspace_key=key,
            cohort=own,
            entered_at=at(-5 + n),
            exited_at=at(-1) if n == 0 else None,
            entered_version=1,
            exited_version=2 if n == 0 else None,
            entered_why={"events_7d": {"value": 120, "holds": True}},
            exited_why={"events_7d": {"value": 10, "holds": False}} if n == 0 else {},
        )
        StagePeriod.objects.create(
            workspace_key=key,
            stage=adopted,
            previous=at_risk,
            entered_at=at(-8 + n),
            exited_at=at(-3) if n % 2 == 0 else None,
            entered_version=1,
            exited_version=1 if n % 2 == 0 else None,
            entered_why={"active_days_7d": {"value": 5, "holds": True}},
        )


def populate() -> None:
    """Every model of the project's apps gets rows (the order follows their foreign keys)."""
    users = make_users()
    customers = make_customers(users)
    events = make_events(customers["workspaces"])
    make_review_items(customers, events, users["admin"])
    make_outbox()
    make_alerts(users, customers["workspaces"])
    make_ops()
    make_privacy()
    make_usage(customers["workspaces"])


def describe(vendor: str) -> dict[str, Any]:
    """The description the test compares against (tests/migrations/state.py), for every project model."""
    import state
    from django.apps import apps

    models = state.concrete_models(state.OLD_PROJECT_APPS)
    empty = [state.label(model) for model in models if not model._default_manager.exists()]
    if empty:
        sys.exit(f"Every project model needs rows in the fixture; empty: {', '.join(empty)}")
    review_item = apps.get_model("linking", "ReviewItem")
    return {
        "commit": COMMIT,
        "vendor": vendor,
        "tables": state.table_counts(),
        "models": {
            state.label(model): {"table": model._meta.db_table, "rows": state.model_rows(model)} for model in models
        },
        "content_types": state.content_types(),
        "groups": state.groups(),
        "user_permissions": state.user_permissions(),
        "audit_entries": {state.label(review_item): state.audit_entries(review_item)},
        "schedules": state.schedules(),
    }


def dump(vendor: str, folder: Path) -> Path:
    """Write the database itself: a gzipped SQLite file, or gzipped plain SQL of pg_dump."""
    from django.db import connection

    settings_dict = connection.settings_dict
    connection.close()
    if vendor == "sqlite":
        target = folder / "pre_layers.sqlite3.gz"
        copy = folder / "pre_layers.sqlite3.tmp"
        source = sqlite3.connect(settings_dict["NAME"])
        destination = sqlite3.connect(copy)
        source.backup(destination)  # folds the WAL in: one self-contained file
        destination.execute("PRAGMA journal_mode=DELETE")
        destination.execute("VACUUM")
        destination.close()
        source.close()
        with copy.open("rb") as raw, gzip.GzipFile(target, "wb", mtime=0) as packed:
            shutil.copyfileobj(raw, packed)
        copy.unlink()
        return target
    target = folder / "pre_layers.postgres.sql.gz"
    command = ["pg_dump", "--no-owner", "--no-privileges", "--dbname", os.environ["DATABASE_URL"]]
    lines = subprocess.run(command, check=True, capture_output=True).stdout.splitlines(keepends=True)
    # Newer pg_dump fences the script with \restrict <random key>: left out, the file is the same every run
    # and older psql can read it (it is our own trusted dump).
    sql = b"".join(line for line in lines if not line.startswith((b"\\restrict ", b"\\unrestrict ")))
    with gzip.GzipFile(target, "wb", mtime=0) as packed:
        packed.write(sql)
    return target


def main() -> None:
    """Migrate the empty database with the old code, fill it, describe it, dump it."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Group permissions are granted from a set (privacy.roles.groups_sync): a fixed hash seed makes the
        # order of their rows, so their ids, the same every run.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})  # noqa: S606
    if len(sys.argv) != 2:
        sys.exit(f"usage: {Path(sys.argv[0]).name} OUTPUT_FOLDER   (run inside a checkout of {COMMIT})")
    folder = Path(sys.argv[1]).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    setup_django()
    import time_machine
    from django.core.management import call_command
    from django.db import connection, transaction

    vendor = "postgres" if connection.vendor == "postgresql" else connection.vendor
    ensure_empty()
    with time_machine.travel(FROZEN, tick=False):
        call_command("migrate", verbosity=0, interactive=False)
        with transaction.atomic():
            populate()
        description = describe(vendor)
    (folder / f"pre_layers.{vendor}.json").write_text(json.dumps(description, indent=1, sort_keys=True) + "\n")
    target = dump(vendor, folder)
    print(f"{target} ({target.stat().st_size} bytes), {sum(description['tables'].values())} rows in all")


if __name__ == "__main__":
    main()
