"""Hardening: webhook rate limits (429), login throttling (axes), staff TOTP (django-otp), CSRF everywhere
but the signed webhooks, an append-only audit trail without client addresses, production cookies and HSTS."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from auditlog.models import LogEntry
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.views import APIView

from billing.webhook import stripe_webhook
from events.models import Event
from events.views import marketo_webhook, provisioning_batch_webhook, provisioning_webhook
from messaging.views import unsubscribe
from privacy.guards import AuditEntryDeletionRefused
from tests.conftest import lifecycle_body, signed_headers
from tests.test_settings_checks import production_env, run_manage
from workspaces.models import Lead

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple-42"
MARKETO_TOKEN = "marketo-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh_counters():
    cache.clear()
    yield
    cache.clear()


def trial(n: int) -> str:
    return lifecycle_body("trial.started", {"workspace_id": f"ws_{n}", "email": f"p{n}@acme.io"})


# --- webhook rate limits --------------------------------------------------------------------------


@pytest.fixture
def limits(settings):
    settings.WEBHOOK_RATE_LIMITS = {"provisioning": 3, "stripe": 3, "marketo": 3}
    settings.WEBHOOK_UNAUTHENTICATED_LIMIT_PER_MINUTE = 4
    settings.MARKETO_WEBHOOK_TOKEN = MARKETO_TOKEN
    return settings


def test_over_the_budget_answers_429_with_retry_after_and_stores_nothing(limits, send_webhook):
    with time_machine.travel("2026-11-20 14:00:15Z", tick=False):
        assert [send_webhook(trial(n)).status_code for n in range(3)] == [202, 202, 202]
        response = send_webhook(trial(3))
    assert response.status_code == 429
    assert response.json() == {"error": "rate_limited"}
    assert response["Retry-After"] == "45"  # the rest of the minute
    assert not Event.objects.filter(workspace_key="ws_3").exists()


def test_the_budget_comes_back_next_minute(limits, send_webhook):
    with time_machine.travel("2026-11-20 14:00:50Z", tick=False) as clock:
        assert [send_webhook(trial(n)).status_code for n in range(4)] == [202, 202, 202, 429]
        clock.shift(timedelta(seconds=15))
        assert send_webhook(trial(4)).status_code == 202


def test_forged_requests_do_not_spend_the_senders_budget(limits, send_webhook):
    forged = {**signed_headers(trial(9)), "webhook-signature": "v1,Zm9yZ2VkIHNpZ25hdHVyZQ=="}
    assert [send_webhook(trial(9), headers=forged).status_code for _ in range(4)] == [401] * 4
    # The real sender still has its whole budget …
    assert [send_webhook(trial(n)).status_code for n in range(3)] == [202, 202, 202]
    # … while forgeries past their own budget are cut off with 429, before any body is looked at.
    response = send_webhook(trial(9), headers=forged)
    assert (response.status_code, response.json()) == (429, {"error": "rate_limited"})


def test_sources_have_separate_budgets(limits, send_webhook, client):
    assert [send_webhook(trial(n)).status_code for n in range(4)] == [202, 202, 202, 429]
    body = json.dumps({"lead_id": "mk_1", "email": "kim@acme.io"})
    response = client.post(
        "/webhooks/marketo/", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {MARKETO_TOKEN}"
    )
    assert response.status_code == 202
    bad = client.post("/webhooks/marketo/", data=body, content_type="application/json", HTTP_AUTHORIZATION="Bearer x")
    assert bad.status_code == 401


def test_stripe_is_limited_too(limits, client, settings):
    from billing.stripe_adapter import sign_payload
    from tests.billing.conftest import STRIPE_SECRET, fixture

    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    statuses = []
    for n in range(4):
        event = fixture("customer.subscription.created.trialing")
        event["id"] = f"evt_limit_{n}"
        body = json.dumps(event)
        response = client.post(
            "/webhooks/stripe/",
            data=body,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=sign_payload(body, STRIPE_SECRET),
        )
        statuses.append(response.status_code)
    assert statuses == [202, 202, 202, 429]


def test_zero_means_no_limit(limits, send_webhook):
    limits.WEBHOOK_RATE_LIMITS = {"provisioning": 0}
    assert {send_webhook(trial(n)).status_code for n in range(6)} == {202}


# --- login throttling (django-axes) -----------------------------------------------------------------


@pytest.fixture
def staff(settings) -> User:
    settings.AXES_ENABLED = True
    return User.objects.create_user("ann", password=PASSWORD, is_staff=True, is_superuser=True)


def admin_login(client: Client, password: str, ip: str = "203.0.113.5"):
    return client.post(
        reverse("admin:login"), {"username": "ann", "password": password, "next": "/admin/"}, REMOTE_ADDR=ip
    )


def test_admin_login_locks_after_five_failures_with_a_clear_message(staff, client):
    assert [admin_login(client, "wrong").status_code for _ in range(4)] == [200] * 4
    locked = admin_login(client, "wrong")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "Try again in" in locked.content.decode()
    # Even the right password is refused while locked.
    assert admin_login(client, PASSWORD).status_code == 429


def test_lockout_is_per_address_and_ends_after_the_cool_off(staff, client):
    for _ in range(5):
        admin_login(client, "wrong")
    assert admin_login(client, PASSWORD, ip="198.51.100.7").status_code == 302  # another address
    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert admin_login(Client(), PASSWORD).status_code == 302


def test_rep_login_page_is_throttled_too(staff, client):
    for _ in range(5):
        client.post(reverse("login"), {"username": "ann", "password": "wrong"}, REMOTE_ADDR="203.0.113.9")
    response = client.post(reverse("login"), {"username": "ann", "password": PASSWORD}, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 429


# --- TOTP for staff (django-otp) ----------------------------------------------------------------------


def token_for(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def test_totp_off_by_default_password_is_enough(staff, client):
    assert admin_login(client, PASSWORD).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_totp_required_asks_for_a_code_from_the_users_device(staff, settings):
    settings.STAFF_TOTP_REQUIRED = True
    out = StringIO()
    call_command("totp_device", "ann", stdout=out)
    assert out.getvalue().startswith("otpauth://totp/")
    device = TOTPDevice.objects.get(user=staff)
    client = Client()
    response = admin_login(client, PASSWORD)
    assert response.status_code == 200 and "otp_token" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # no verified session
    response = client.post(
        reverse("admin:login"),
        {"username": "ann", "password": PASSWORD, "otp_device": device.persistent_id, "otp_token": token_for(device),
         "next": "/admin/"},
    )  # fmt: skip
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_session_without_totp_is_turned_away_once_it_is_required(staff, client, settings):
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200
    settings.STAFF_TOTP_REQUIRED = True
    assert client.get("/admin/").status_code == 302


# --- CSRF ----------------------------------------------------------------------------------------------


def _callbacks(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _callbacks(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def test_only_the_signed_webhooks_and_the_signed_unsubscribe_link_are_csrf_exempt():
    """A mail client's one-click unsubscribe (RFC 8058) is a POST without a CSRF token: the signed token in
    its URL is the permission, as a signature is a webhook's."""
    exempt = {
        route
        for route, callback in _callbacks(get_resolver().url_patterns)
        if getattr(callback, "csrf_exempt", False)
        # DRF views are exempt from Django's middleware but enforce CSRF themselves for session logins.
        and not issubclass(getattr(callback, "cls", object), APIView)
    }
    webhooks = {provisioning_webhook, provisioning_batch_webhook, marketo_webhook, stripe_webhook, unsubscribe}
    routes = {route for route, callback in _callbacks(get_resolver().url_patterns) if callback in webhooks}
    assert (
        exempt
        == routes
        == {
            "webhooks/provisioning/",
            "webhooks/provisioning/batch/",
            "webhooks/marketo/",
            "webhooks/stripe/",
            "unsubscribe/<str:token>/",
        }
    )


def test_forms_refuse_a_post_without_the_csrf_token(staff):
    client = Client(enforce_csrf_checks=True)
    assert client.post(reverse("admin:login"), {"username": "ann", "password": PASSWORD}).status_code == 403
    assert client.post(reverse("login"), {"username": "ann", "password": PASSWORD}).status_code == 403


# --- the audit trail ------------------------------------------------------------------------------------


def test_audit_entries_are_deletable_by_nobody(staff, client):
    Lead.objects.create(email="kim@acme.io")
    entry = LogEntry.objects.get()
    # Each attempt in its own savepoint: the refusal rolls back the transaction it happens in.
    with pytest.raises(AuditEntryDeletionRefused), transaction.atomic():
        entry.delete()
    with pytest.raises(AuditEntryDeletionRefused), transaction.atomic():
        LogEntry.objects.all().delete()
    client.force_login(staff)  # a superuser
    assert client.get(reverse("admin:auditlog_logentry_delete", args=[entry.pk])).status_code == 403
    changelist = client.get(reverse("admin:auditlog_logentry_changelist"))
    assert "delete_selected" not in changelist.content.decode()
    assert LogEntry.objects.count() == 1


def test_audit_entries_keep_no_client_address(staff, client):
    client.force_login(staff)
    lead = Lead.objects.create(email="kim@acme.io")
    response = client.post(
        reverse("admin:workspaces_lead_change", args=[lead.pk]),
        {"email": "kim@acme.io", "first_name": "Kim", "lead_source": "Self-Serve Trial"},
        REMOTE_ADDR="198.51.100.23",
    )
    assert response.status_code == 302, response.content[:300]
    entry = LogEntry.objects.filter(action=LogEntry.Action.UPDATE).get()
    assert entry.actor == staff and entry.remote_addr is None


# --- production settings ----------------------------------------------------------------------------


def test_production_settings_have_secure_cookies_and_hsts():
    code = (
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SESSION_COOKIE_HTTPONLY, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_SSL_REDIRECT, "
        "s.AXES_ENABLED, s.AUDITLOG_DISABLE_REMOTE_ADDR)"
    )
    result = run_manage("shell", "-v", "0", "-c", code, env=production_env())
    assert result.stdout.split() == ["True", "True", "True", "31536000", "True", "True", "True", "True"], result.stderr


def test_production_without_a_privacy_salt_refuses_to_start():
    env = production_env()
    del env["PRIVACY_HASH_SALT"]
    result = run_manage("check", "--deploy", env=env)
    assert result.returncode != 0
    assert "Set the PRIVACY_HASH_SALT environment variable" in result.stderr


def test_counters_shared_through_redis_when_configured(limits, send_webhook, settings):
    """With CACHE_URL=redis://… every process counts in one place (Django's own Redis cache backend)."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/14",
            "KEY_PREFIX": f"privacy-test-{uuid.uuid4().hex}",
        }
    }
    with time_machine.travel("2031-01-01 00:00:05Z", tick=False):
        assert [send_webhook(trial(n)).status_code for n in range(4)] == [202, 202, 202, 429]
