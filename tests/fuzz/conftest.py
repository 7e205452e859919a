"""Fixtures of the fuzz tests: webhook settings, the test connection kept open, a reader's token, and data
for the read API to show (the schema and the app are in schema.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from rest_framework.authtoken.models import Token

from alerts.services import alert_raise
from events.models import Event
from tests.conftest import api_service_user
from tests.factories import AccountFactory, ContactFactory, EventFactory, LeadFactory, WorkspaceFactory
from workspaces.models import Workspace

STRIPE_SECRET = "whsec_" + base64.b64encode(b"lifecycle-engine-fuzz-stripe-01").decode()
MARKETO_TOKEN = "fuzz-marketo-token-0123456789abcdef"


@pytest.fixture
def fuzz_settings(settings):
    """Every webhook configured; the rate limiter off, so no answer depends on the wall clock."""
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    settings.MARKETO_WEBHOOK_TOKEN = MARKETO_TOKEN
    settings.WEBHOOK_UNAUTHENTICATED_LIMIT_PER_MINUTE = 0
    settings.WEBHOOK_RATE_LIMITS = {"provisioning": 0, "stripe": 0, "marketo": 0}
    return settings


@pytest.fixture(autouse=True)
def keep_the_test_connection() -> Iterator[None]:
    """Requests reach the engine's real WSGI handler, whose request signals close a connection that is inside
    a transaction: the test's own, on PostgreSQL. Django's test client keeps it open the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def reader_token(db) -> str:
    """A token of an API service account (reads everything), made the way tests/test_api.py makes them."""
    reader = api_service_user("fuzz-reader")
    return Token.objects.create(user=reader).key


@pytest.fixture
def api_data(db) -> None:
    """Linked and unlinked workspaces, events in several states, and alerts: responses with real shapes
    (ws_8812 is the example workspace_id the schema gives, so the detail is fuzzed with a 200 too)."""
    now = timezone.now()
    account = AccountFactory(name="Acme", domain="acme.io")
    contact = ContactFactory(email="dana@acme.io", account=account)
    lead = LeadFactory(email="dana@acme.io", converted_at=now, converted_account=account, converted_contact=contact)
    paid = WorkspaceFactory(
        workspace_id="ws_8812", name="Acme team", status=Workspace.Status.PAID, email="dana@acme.io", plan="team",
        mrr=Decimal("297.00"), converted_at=now, needs_review=True, review_reasons=["Conflicting owner email."],
        lead=lead, account=account, contact=contact,
    )  # fmt: skip
    trial = WorkspaceFactory(workspace_id="ws_trial", trial_expires_at=now + timedelta(days=3))
    WorkspaceFactory(workspace_id="ws_gone", status=Workspace.Status.CHURNED, churned_at=now, churn_reason="price")
    EventFactory(workspace_key=paid.workspace_id, status=Event.Status.COMPLETED)
    EventFactory(workspace_key=trial.workspace_id, status=Event.Status.REVIEW, notes="No trial on record.")
    EventFactory(occurred_at=None, workspace_key="", status=Event.Status.REJECTED, payload="not json")
    alert_raise(
        rule="trial_expiring", dedupe_key="trial_expiring:ws_trial", title="Trial expiring", reason="3 days left",
        workspace=trial,
    )  # fmt: skip
    alert_raise(rule="sync_paused", dedupe_key="sync_paused:1", title="Sync paused", reason="API limits")
