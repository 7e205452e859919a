"""Shared fixtures: a configured provisioning secret and a helper that sends signed webhooks."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from events.signatures import sign_standard_webhook

PROVISIONING_SECRET = "whsec_" + base64.b64encode(b"lifecycle-engine-test-key-0001").decode()
OLD_PROVISIONING_SECRET = "whsec_" + base64.b64encode(b"lifecycle-engine-rotated-out-01").decode()


@pytest.fixture(autouse=True)
def engine_settings(settings) -> Any:
    """Every test starts configured, storing inline (group commit has its own threaded tests)."""
    settings.PROVISIONING_WEBHOOK_SECRET = PROVISIONING_SECRET
    settings.WEBHOOK_GROUP_COMMIT = False
    settings.SECURE_SSL_REDIRECT = False
    return settings


def signed_headers(
    body: str, *, msg_id: str | None = None, timestamp: int | None = None, secret: str = PROVISIONING_SECRET
) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhook(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def lifecycle_body(event_type: str, data: dict[str, Any], timestamp: str = "2026-11-20T14:03:11Z") -> str:
    return json.dumps({"type": event_type, "timestamp": timestamp, "data": data})


def api_service_user(username: str = "api-reader"):
    """An API service account (alerts/roles.py): reads the whole read API by token, nothing else."""
    from django.contrib.auth.models import Group, User

    from alerts.roles import API_SERVICES_GROUP

    user = User.objects.create_user(username)  # no password: no slow hashing
    user.groups.add(Group.objects.get_or_create(name=API_SERVICES_GROUP)[0])
    return user


SendWebhook = Callable[..., Any]


@pytest.fixture
def send_webhook(client: Client) -> SendWebhook:
    """POST a body to the provisioning webhook, signed unless headers are given."""

    def send(body: str | bytes, *, headers: dict[str, str] | None = None, **sign_kwargs: Any):
        text = body.decode() if isinstance(body, bytes) else body
        return client.post(
            "/webhooks/provisioning/",
            data=body,
            content_type="application/json",
            headers=headers if headers is not None else signed_headers(text, **sign_kwargs),
        )

    return send
