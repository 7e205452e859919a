"""A canary person sent through the real endpoints, processed and synced to the Salesforce emulator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from alerts.services import alert_raise
from emulators.salesforce import Emulator
from linking.marketo import marketo_events_apply
from ops.logging import JsonFormatter
from processing.pipeline import workspace_process
from salesforce.models import OutboxItem, SyncControl
from salesforce.worker import outbox_drain
from tests.conftest import lifecycle_body, signed_headers
from usage.rollups import usage_rollup
from workspaces.models import Contact

CANARY = "Cassandra.Quill@Canary-Corp.io"
CANARY_NORMALISED = CANARY.lower()
NAMES = ("Cassandra", "Quill")
OTHER = "olaf@other-corp.io"
OTHER_NAMES = ("Olaf", "Berg")
MARKETO_TOKEN = "marketo-token-0123456789abcdef"


@pytest.fixture
def salesforce(settings, monkeypatch) -> Iterator[Emulator]:
    """A fresh emulator, the engine in live sync against it, its CA trusted (as in tests/salesforce)."""
    with Emulator(timeout_sleep=3.0, seed=7) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_bundle_path)
        settings.SALESFORCE_SYNC = "live"
        settings.SALESFORCE_INSTANCE_URL = emulator.instance_url
        settings.SALESFORCE_LOGIN_URL = emulator.login_url
        settings.SALESFORCE_CLIENT_ID = emulator.client_id
        settings.SALESFORCE_CLIENT_SECRET = emulator.client_secret
        settings.SALESFORCE_ACCESS_TOKEN = ""
        settings.SALESFORCE_TIMEOUT_SECONDS = 5
        yield emulator


def drain() -> None:
    for _ in range(4):
        outbox_drain()
        OutboxItem.objects.update(next_attempt_at=None)
        SyncControl.objects.update(paused_until=None)


@dataclass
class Canary:
    admin: User
    client: Client
    sent: list[tuple[str, str]]  # (webhook-id, body) of the canary's provisioning webhooks


def send_marketo(client: Client, email: str, lead_id: str):
    body = {"lead_id": lead_id, "email": email, "first_name": NAMES[0], "last_name": NAMES[1], "company": "Canary"}
    return client.post(
        "/webhooks/marketo/",
        data=json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {MARKETO_TOKEN}"},
    )


def canary_events(email: str, workspace_id: str = "ws_canary", names: tuple[str, str] = NAMES) -> list[str]:
    return [
        lifecycle_body(
            "trial.started",
            {
                "workspace_id": workspace_id,
                "email": email,
                "first_name": names[0],
                "last_name": names[1],
                "company": "Canary Corp",
                "workspace_name": f"{names[0]}'s workspace",
                "plan": "team",
                "utm": {"referrer": email},
            },
        ),
        lifecycle_body(
            "subscription.converted",
            {"workspace_id": workspace_id, "email": email, "plan": "team", "mrr": "297.00"},
            timestamp="2026-11-25T10:00:00Z",
        ),
        lifecycle_body("usage.recorded", {"workspace_id": workspace_id, "feature": "export", "user_email": email}),
    ]


@pytest.fixture
def canary(settings, salesforce, send_webhook, client, admin_user, caplog) -> Canary:
    """The canary and a bystander, received through the signed endpoints, processed, linked, converted,
    synced, alerted on and touched by an admin: every place a person can end up."""
    caplog.set_level(logging.DEBUG)
    settings.MARKETO_WEBHOOK_TOKEN = MARKETO_TOKEN
    sent = []
    for body in [*canary_events(CANARY), *canary_events(OTHER, "ws_other", OTHER_NAMES)]:
        headers = signed_headers(body)
        assert send_webhook(body, headers=headers).status_code == 202
        sent.append((headers["webhook-id"], body))
    assert send_marketo(client, CANARY, "mk_canary").status_code == 202
    # Someone else pays for the canary's workspace: a conflicting-owner question naming both addresses.
    conflict = {"workspace_id": "ws_canary", "email": "finance@canary-corp.io", "plan": "team", "mrr": "297.00"}
    body = lifecycle_body("subscription.converted", conflict, timestamp="2026-11-26T10:00:00Z")
    assert send_webhook(body).status_code == 202
    for key in ("ws_canary", "ws_other"):
        workspace_process(workspace_key=key)
    usage_rollup()
    marketo_events_apply()
    drain()
    alert_raise(
        rule="needs_review",
        dedupe_key="needs_review:ws_canary:test",
        title=f"{CANARY_NORMALISED} needs a look",
        reason=f"{NAMES[0]} {NAMES[1]} ({CANARY_NORMALISED}) asked for a call.",
        workspace_key="ws_canary",
        context={"values": {"email": CANARY_NORMALISED, "first_name": NAMES[0]}},
    )
    admin_client = Client()
    admin_client.force_login(admin_user)
    contact = Contact.objects.get(email=CANARY_NORMALISED)
    response = admin_client.post(
        f"/admin/workspaces/contact/{contact.pk}/change/",
        {"email": contact.email, "first_name": "Cass", "last_name": NAMES[1], "account": contact.account_id},
        REMOTE_ADDR="198.51.100.23",
    )
    assert response.status_code == 302, response.content[:500]
    return Canary(admin=admin_user, client=admin_client, sent=sent[:3])


def database_dump() -> str:
    """The whole database as text: SQLite's own dump, or every row of every table as text (PostgreSQL),
    read on the test's connection so uncommitted rows are included."""
    if connection.vendor == "sqlite":
        return "\n".join(connection.connection.iterdump())
    lines = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT t::text FROM {connection.ops.quote_name(table)} t")  # noqa: S608
            lines += [f"{table}: {row[0]}" for row in cursor.fetchall()]
    return "\n".join(lines)


def log_text(caplog) -> str:
    """Every captured record, as the engine's JSON formatter writes it and as plain text."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records) + "\n" + caplog.text


def salesforce_text(emulator: Emulator, *, include_deleted: bool) -> str:
    names = ("Lead", "Contact", "Account", "Workspace__c")
    return json.dumps(
        {name: emulator.store.records(name, include_deleted=include_deleted) for name in names}, default=str
    )
